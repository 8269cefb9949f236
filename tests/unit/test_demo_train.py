"""The demo's training script: who fails, and who waits for the restart a failure brings."""

import os
import time
from pathlib import Path

import pytest

from torchelastic_otel.demo import train


def test_due_until_every_failing_rank_of_the_world_has_failed(tmp_path: Path) -> None:
    assert train._due({1, 3}, 4, 1, tmp_path) == {1, 3}
    (tmp_path / "failed-rank-1").write_text("restart 0\n")
    assert train._due({1, 3}, 4, 1, tmp_path) == {3}
    (tmp_path / "failed-rank-3").write_text("restart 0\n")
    assert train._due({1, 3}, 4, 1, tmp_path) == set()
    assert train._due({1, 3}, 4, 2, tmp_path) == {1, 3}


def test_ranks_outside_the_world_are_never_due(tmp_path: Path) -> None:
    assert train._due({5}, 4, 1, tmp_path) == set()
    assert train._due(set(), 4, 1, tmp_path) == set()


def test_ready_needs_every_rank_touched_since_the_attempt_began(tmp_path: Path) -> None:
    since = time.time()
    assert not train._ready({0, 2}, since, tmp_path)
    (tmp_path / "ready-rank-0").touch()
    (tmp_path / "ready-rank-2").touch()
    # A previous attempt's file, whose worker is gone, does not count.
    os.utime(tmp_path / "ready-rank-2", (since - 10, since - 10))
    assert not train._ready({0, 2}, since - 5, tmp_path)
    assert train._ready({0}, since - 5, tmp_path)
    assert train._ready(set(), since, tmp_path)


def test_failing_rank_waits_for_its_peers_then_fails_and_leaves_its_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    args = ["--fail-once-ranks=1", f"--marker-dir={tmp_path}", "--train-seconds=0"]
    # Rank 0 is not up: the failure waits for it, up to the bound, then happens.
    with pytest.raises(RuntimeError, match="simulated failure"):
        train._train([*args, "--wait-for-failure-seconds=0.2"])
    assert (tmp_path / "failed-rank-1").read_text() == "restart 0\n"
    # The next attempt has no failure due: it trains and finishes.
    assert train._train(args) == 0


def test_healthy_rank_waits_while_a_failure_is_due_and_finishes_once_it_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["--fail-once-ranks=1", f"--marker-dir={tmp_path}", "--train-seconds=0"]
    # A failure is due: it says it is waiting (the bound stands in for its agent).
    assert train._train([*args, "--wait-for-failure-seconds=0.2"]) == 0
    assert (tmp_path / "ready-rank-0").exists()
    (tmp_path / "failed-rank-1").write_text("restart 0\n")
    (tmp_path / "ready-rank-0").unlink()
    assert train._train(args) == 0
    assert not (tmp_path / "ready-rank-0").exists()
    assert capsys.readouterr().out.count("rank 0/2: done") == 2
