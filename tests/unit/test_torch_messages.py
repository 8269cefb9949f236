"""torch's messages and the cycle key, read once for the exporter and the timeline.

Checked on a real torch 2.13 agent's recorded rendezvous events
(benchmarks/streams/c10d-2x8-r3: 2 nodes, 3 restarts, c10d), so that a change of
wording in torch shows here first.
"""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from torchelastic_otel.cycles import CycleKey
from torchelastic_otel.torch_messages import (
    chatter_kind,
    got_signal,
    is_closed,
    is_join_attempt,
    joined_round,
)

STREAMS = Path(__file__).resolve().parents[2] / "benchmarks" / "streams" / "c10d-2x8-r3"


def _rendezvous_events(node: str) -> list[dict[str, Any]]:
    rows = [json.loads(line)["event"] for line in (STREAMS / f"{node}.jsonl").open()]
    return [r for r in rows if "message" in r]


@pytest.mark.parametrize("node", ["node-0", "node-1"])
def test_a_real_agents_rendezvous_read(node: str) -> None:
    events = _rendezvous_events(node)
    rounds = [joined_round(e["message"]) for e in events]
    assert [r for r in rounds if r is not None] == [0, 1, 2, 3]
    assert sum(is_join_attempt(e["name"], e["message"]) for e in events) == 4
    assert sum(is_closed(e["message"]) for e in events) == 1
    kinds = Counter(chatter_kind(e["name"], e["message"]) for e in events)
    assert kinds["heartbeat"] == 34 and kinds["sync"] > 0 and kinds["stale_sync"] > 0
    # A joining or joined event is never taken for chatter.
    for e in events:
        if joined_round(e["message"]) is not None or is_join_attempt(e["name"], e["message"]):
            assert chatter_kind(e["name"], e["message"]) is None, e


def test_signal_exception_text() -> None:
    trace = "Traceback ...\ntorch.distributed.elastic.multiprocessing.api.SignalException:\n"
    assert got_signal(trace + "Process 7 got signal: 15") == 15
    assert got_signal("RuntimeError: got signal: 9") is None
    assert got_signal("Process 7 got signal: 9", typed=True) == 9


@pytest.mark.parametrize(
    ("seen", "key", "text"),
    [([], CycleKey(0), "0"), ([0], CycleKey(0, 1), "0.1"), ([0, 1, 0], CycleKey(0, 2), "0.2")],
)
def test_the_cycle_key_round_trips(seen: list[int], key: CycleKey, text: str) -> None:
    assert CycleKey.on_node(0, seen) == key
    assert str(key) == text and CycleKey.parse(text) == key
    assert CycleKey.parse(key.id_key) == key
    assert key.repeated == bool(seen.count(0))


@pytest.mark.parametrize("bad", ["", "x", "1.x", "1.2.3", True, None])
def test_a_cycle_key_that_is_none(bad: object) -> None:
    assert CycleKey.parse(bad) is None
