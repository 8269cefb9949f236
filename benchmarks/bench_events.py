"""Events core against torch 2.13.0's events module, in one run.

Measures:

* ``construct_and_record_rdzv_event`` with a live ``dynamic_rendezvous`` handler
  (writing to /dev/null), called at stack depth 10 and 40: ours against torch's;
* ``import torchelastic_otel.events`` (``python -X importtime``, cumulative, median
  of fresh interpreters) and the same for torch's module.

Prints a table with ratios; ``--json PATH`` also writes the numbers.

Usage::

    python benchmarks/bench_events.py [--repeat 2000] [--json out.json]
"""

import argparse
import functools
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any


def _at_depth(depth: int, fn: Callable[[], None]) -> None:
    if depth > 0:
        _at_depth(depth - 1, fn)
        return
    fn()


def _noop() -> None:
    pass


def _time_calls(fn: Callable[[], None], repeat: int) -> list[float]:
    """Per-call wall times in microseconds."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1000)
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_us": statistics.median(samples),
        "p99_us": samples[int(len(samples) * 0.99) - 1],
    }


def _live_rdzv(module: ModuleType, handlers_module: ModuleType, devnull: Any) -> None:
    handlers_module._log_handlers["dynamic_rendezvous"] = logging.StreamHandler(devnull)
    module._events_loggers.pop("dynamic_rendezvous", None)
    logging.getLogger("torchelastic-events-dynamic_rendezvous").handlers.clear()


def bench_construct(repeat: int) -> dict[str, Any]:
    # Importing torch without NumPy warns on stderr; keep the table readable.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch.distributed.elastic.events as theirs
    import torch.distributed.elastic.events.handlers as theirs_handlers

    import torchelastic_otel.events as ours
    from torchelastic_otel.events import handlers as ours_handlers

    devnull = open(os.devnull, "w")  # noqa: SIM115 -- lives for the whole benchmark
    results: dict[str, Any] = {}
    for depth in (10, 40):
        row = {}
        for label, module, handlers_module in (
            ("torch", theirs, theirs_handlers),
            ("ours", ours, ours_handlers),
        ):
            _live_rdzv(module, handlers_module, devnull)
            state = module.NodeState.RUNNING

            def call(m: ModuleType = module, s: Any = state) -> None:
                m.construct_and_record_rdzv_event(run_id="r", message="m", node_state=s)

            deep_call = functools.partial(_at_depth, depth, call)
            _time_calls(deep_call, 50)  # warm up
            row[label] = _time_calls(deep_call, repeat)
        # Subtract the cost of just descending `depth` frames.
        base = statistics.median(_time_calls(functools.partial(_at_depth, depth, _noop), repeat))
        results[f"depth_{depth}"] = {
            label: {k: v - base for k, v in _summary(samples).items()}
            for label, samples in row.items()
        }
    return results


# The standard-library modules torch's events module imports too (its handlers are
# logging handlers, its events dataclasses serialized with json): the floor under
# any faithful mirror, measured in the same run so that a slow machine shows as such.
STDLIB_FLOOR = ("logging", "dataclasses", "json")


def _import_cost_us(modules: tuple[str, ...]) -> float:
    """``import <modules>``'s whole cost in a fresh interpreter (``-X importtime``).

    Each module's line at the top level of the tree (one space after the bar) is
    its whole cost, everything it imported first included; a deeper line with the
    same name is the same module imported from inside another (``torchelastic_otel``
    imports its ``events``), only part of it.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-W", "ignore", "-c", "import " + ", ".join(modules)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    total = 0.0
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].startswith(" ") and parts[2][1:] in modules:
            total += float(parts[1])
    return total


def bench_import(runs: int) -> dict[str, float]:
    """Median import costs in ms; the three alternate, so load hits them alike."""
    cases = {
        "ours": ("torchelastic_otel.events",),
        "torch": ("torch.distributed.elastic.events",),
        "stdlib_floor": STDLIB_FLOOR,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, modules in cases.items():
            samples[name].append(_import_cost_us(modules) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--import-runs", type=int, default=11)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.repeat < 100:
        parser.error("--repeat must be at least 100 for a meaningful p99")

    results: dict[str, Any] = {"construct_and_record_rdzv_event": bench_construct(args.repeat)}
    results["import_ms"] = bench_import(args.import_runs)

    print(f"{'measure':<44}{'torch':>12}{'ours':>12}{'torch/ours':>12}")
    for depth, row in results["construct_and_record_rdzv_event"].items():
        for stat in ("median_us", "p99_us"):
            t, o = row["torch"][stat], row["ours"][stat]
            name = f"construct_and_record_rdzv_event {depth} {stat}"
            print(f"{name:<44}{t:>12.1f}{o:>12.1f}{t / o:>11.1f}x")
    imp = results["import_ms"]
    name = "import events module (ms)"
    ratio = imp["torch"] / imp["ours"]
    print(f"{name:<44}{imp['torch']:>12.1f}{imp['ours']:>12.1f}{ratio:>11.1f}x")
    floor = imp["stdlib_floor"]
    name = f"  of which import {', '.join(STDLIB_FLOOR)} (ms)"
    print(f"{name:<44}{'':>12}{floor:>12.1f}{floor / imp['ours']:>11.2f} of ours")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
