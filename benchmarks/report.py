"""One table of every benchmark against its target, from the JSON the others wrote.

Usage (``make bench`` runs it last)::

    python benchmarks/report.py benchmarks/results-events.json \\
        benchmarks/results-record.json benchmarks/results-pipeline.json \\
        --json benchmarks/results.json
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
    out.append(
        (
            "import events module",
            f"ours {imp['ours']:.1f} ms, torch {imp['torch']:.0f} ms",
            "<= 30 ms",
            imp["ours"] <= 30,
        )
    )
    for kind, label in (("rdzv", "rendezvous events"), ("worker", "worker events (+spans)")):
        t = pipeline["throughput"][kind]
        out.append(
            (
                f"end to end through rotel: {label}",
                f"{t['events_per_s']:,.0f} events/s, {t['lost']} lost of {t['events']:,}",
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("record", type=Path)
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    loaded = [json.loads(p.read_text()) for p in (args.events, args.record, args.pipeline)]
    table = rows(*loaded)
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
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
