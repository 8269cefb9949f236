"""One table of every benchmark against its target, from the JSON the others wrote.

Usage (``make bench`` runs it last)::

    python benchmarks/report.py benchmarks/results-events.json \\
        benchmarks/results-record.json benchmarks/results-pipeline.json \\
        --scale benchmarks/results-scale.json benchmarks/scale-large.json \\
        --json benchmarks/results.json

``benchmarks/scale-large.json`` (the 4,096- and 10,000-node rows, ``make
bench-scale-large``: ~25 min) is optional; the scale goals are read on the largest row.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def rows(events: Any, record: Any, pipeline: Any) -> list[tuple[str, str, str, bool]]:
    """(measure, value, target, met) for every target of issue #7."""
    torch_console = record["torch console"]
    out = []
    for name in ("ours otel, collector up", "ours otel, collector down"):
        r = record[name]
        ratio = r["median_us"] / torch_console["median_us"]
        out.append(
            (
                f"record() {name.removeprefix('ours otel, ')}: median",
                f"{r['median_us']:.1f} µs = {ratio:.2f}x torch console "
                f"({torch_console['median_us']:.1f} µs)",
                "<= 1.0x",
                ratio <= 1.0,
            )
        )
        out.append(
            (
                f"record() {name.removeprefix('ours otel, ')}: p99",
                f"{r['p99_us']:.1f} µs",
                "<= 50 µs",
                r["p99_us"] <= 50,
            )
        )
    sdk = record.get("stock SDK LoggingHandler")
    if sdk:
        out.append(
            (
                "stock SDK LoggingHandler: median (reference)",
                f"{sdk['median_us']:.1f} µs = "
                f"{sdk['median_us'] / torch_console['median_us']:.2f}x torch",
                "-",
                True,
            )
        )
    bridged, null = record.get("torch put_metric, bridged"), record.get("torch put_metric")
    if bridged and null:
        out.append(
            (
                "torch put_metric, bridged to OpenTelemetry",
                f"{bridged['median_us']:.1f} µs (torch's NullMetricHandler: "
                f"{null['median_us']:.1f} µs), p99 {bridged['p99_us']:.1f} µs",
                "<= torch console",
                bridged["median_us"] <= torch_console["median_us"],
            )
        )
    for depth in ("depth_10", "depth_40"):
        row = events["construct_and_record_rdzv_event"][depth]
        speedup = row["torch"]["median_us"] / row["ours"]["median_us"]
        target = depth == "depth_40"
        out.append(
            (
                f"construct_and_record_rdzv_event {depth.replace('_', ' ')}",
                f"ours {row['ours']['median_us']:.1f} µs, "
                f"torch {row['torch']['median_us']:.1f} µs = {speedup:.0f}x faster",
                ">= 50x at depth 40" if target else "-",
                speedup >= 50 if target else True,
            )
        )
    imp = events["import_ms"]
    floor = imp.get("stdlib_floor")
    out.append(
        (
            "import events module",
            f"ours {imp['ours']:.1f} ms, torch {imp['torch']:.0f} ms"
            + (f"; logging + dataclasses + json alone {floor:.1f} ms" if floor is not None else ""),
            "<= 30 ms",
            imp["ours"] <= 30,
        )
    )
    for kind, label in (("rdzv", "rendezvous events"), ("worker", "worker events (+spans)")):
        t = pipeline["throughput"][kind]
        out.append(
            (
                f"end to end through rotel: {label}",
                f"{t['events_per_s']:,.0f} events/s, {t['lost']} lost of {t['events']:,}"
                f" ({t.get('records', t['events'] - t['lost']):,} records)",
                ">= 20,000/s, 0 lost",
                t["events_per_s"] >= 20_000 and t["lost"] == 0,
            )
        )
    e = pipeline["exit"]
    out.append(("exit delay, collector up", f"{e['collector_up_s']:.2f} s", "-", True))
    out.append(
        (
            "exit delay, collector down",
            f"{e['collector_down_s']:.2f} s",
            "<= 1 s",
            e["collector_down_s"] <= 1.0,
        )
    )
    loaded = e.get("collector_down_two_hogs")
    if loaded is not None:  # results of 2026-12-05 on
        out.append(
            (
                "exit, collector down, two CPU hogs: the flush (bounded)",
                f"{loaded['flush_s']:.2f} s (whole exit {loaded['whole_s']:.2f} s, of which "
                f"interpreter teardown {loaded['teardown_s']:.2f} s)",
                "<= 1 s",
                loaded["flush_s"] <= 1.0,
            )
        )
    m = pipeline["rss"]
    bounded = m["peak_rss_mib"] <= 2 * m["peak_rss_mib_10k_events"]
    out.append(
        (
            "peak RSS, 1,000,000 events, collector down",
            f"{m['peak_rss_mib']:.0f} MiB (10,000 events: {m['peak_rss_mib_10k_events']:.0f} MiB)",
            "bounded by the queue",
            bounded,
        )
    )
    return out


def scale_rows(scale: Any) -> list[tuple[str, str, str, bool]]:
    """The scale goals (issue 21: 10,000 nodes, no backend changed), on the largest replay."""
    largest = max(scale["scale"], key=lambda r: r["nodes"])
    n = f"{largest['nodes']:,} nodes x {largest['workers']}"
    trace_mb = largest["largest_trace_bytes"] / 1e6
    draw = largest.get("timeline_draw_s")
    rss = largest.get("timeline_peak_rss_mib")
    out = [
        (
            f"largest trace, {n}",
            f"{largest['largest_trace_spans']:,} spans, {trace_mb:.2f} MB",
            "<= 5 MB (Tempo's default)",
            largest["largest_trace_bytes"] <= 5_000_000,
        ),
        (
            "records per node per hour, steady state",
            f"{largest['records_per_node_per_hour_steady']:.0f} "
            f"({largest['bytes_per_node_per_hour_steady'] / 1000:.1f} KB)",
            "<= 60",
            largest["records_per_node_per_hour_steady"] <= 60,
        ),
        (
            "metrics per node, one export (every 60 s)",
            f"{largest['metric_series_per_node']:.0f} data points, "
            f"{largest['metric_bytes_per_export_per_node'] / 1000:.1f} KB",
            "-",
            True,
        ),
        (
            f"timeline, {n}",
            f"{largest['timeline_s']:.1f} s, {largest['timeline_lines']} lines, "
            f"HTML {largest['timeline_html_bytes'] / 1e6:.2f} MB"
            + (f", peak RSS {rss:,} MiB" if rss is not None else ""),
            "<= 15 s, <= 200 lines, <= 5 MB",
            largest["timeline_s"] <= 15
            and largest["timeline_lines"] <= 200
            and largest["timeline_html_bytes"] <= 5_000_000,
        ),
        (
            f"timeline page drawn by Chromium, {n}",
            "no Chromium" if draw is None else f"{draw:.1f} s",
            "<= 5 s",
            draw is not None and draw <= 5,
        ),
    ]
    if largest.get("collector") == "otelcol":
        out.append(
            (
                f"collector per restart cycle, {n}",
                f"gateway {largest['collector_cpu_s_per_cycle']:.1f} CPU-s, "
                f"{largest['collector_peak_rss_mib']} MiB peak; sampler, every trace at once: "
                f"{largest['sampler_cpu_s']:.1f} CPU-s, {largest['sampler_peak_rss_mib']} MiB peak",
                "-",
                True,
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("record", type=Path)
    parser.add_argument("pipeline", type=Path)
    parser.add_argument(
        "--scale", type=Path, nargs="+", help="bench_scale.py's results (their rows are joined)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    loaded = [json.loads(p.read_text()) for p in (args.events, args.record, args.pipeline)]
    table = rows(*loaded)
    scale = (
        {"scale": [row for path in args.scale for row in json.loads(path.read_text())["scale"]]}
        if args.scale
        else None
    )
    if scale is not None:
        table += scale_rows(scale)
    width = max(len(r[0]) for r in table)
    print(f"{'measure':<{width}}  {'value':<70} {'target':<22} met")
    for measure, value, target, met in table:
        print(f"{measure:<{width}}  {value:<70} {target:<22} {'yes' if met else 'MISSED'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "table": [
                        dict(zip(("measure", "value", "target", "met"), r, strict=True))
                        for r in table
                    ],
                    "events": loaded[0],
                    "record": loaded[1],
                    "pipeline": loaded[2],
                    "scale": scale,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
