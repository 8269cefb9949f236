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


def _import_time_us(module: str, runs: int) -> float:
    """Median cumulative import time of ``module`` in fresh interpreters."""
    times = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-W", "ignore", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        for line in proc.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                times.append(float(parts[1]))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--import-runs", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.repeat < 100:
        parser.error("--repeat must be at least 100 for a meaningful p99")

    results: dict[str, Any] = {"construct_and_record_rdzv_event": bench_construct(args.repeat)}
    results["import_ms"] = {
        "ours": _import_time_us("torchelastic_otel.events", args.import_runs) / 1000,
        "torch": _import_time_us("torch.distributed.elastic.events", args.import_runs) / 1000,
    }

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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
