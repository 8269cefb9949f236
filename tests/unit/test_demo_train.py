"""The demo's training script: who fails, and who keeps training while a failure is due."""

from pathlib import Path

import pytest

from torchelastic_otel.demo import train


def test_failure_due_until_every_failing_rank_of_the_world_has_failed(tmp_path: Path) -> None:
    assert train._failure_due({1, 3}, 4, 1, tmp_path)
    (tmp_path / "failed-rank-1").write_text("restart 0\n")
    assert train._failure_due({1, 3}, 4, 1, tmp_path)
    (tmp_path / "failed-rank-3").write_text("restart 0\n")
    assert not train._failure_due({1, 3}, 4, 1, tmp_path)
    assert train._failure_due({1, 3}, 4, 2, tmp_path)


def test_ranks_outside_the_world_are_never_due(tmp_path: Path) -> None:
    assert not train._failure_due({5}, 4, 1, tmp_path)
    assert not train._failure_due(set(), 4, 1, tmp_path)


def test_failing_rank_fails_and_leaves_its_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    args = ["--fail-once-ranks=1", f"--marker-dir={tmp_path}", "--train-seconds=0"]
    with pytest.raises(RuntimeError, match="simulated failure"):
        train._train(args)
    assert (tmp_path / "failed-rank-1").read_text() == "restart 0\n"
    # The next attempt trains and, with no failure due any more, finishes.
    assert train._train(args) == 0


def test_healthy_rank_finishes_once_the_failure_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    (tmp_path / "failed-rank-1").write_text("restart 0\n")
    args = ["--fail-once-ranks=1", f"--marker-dir={tmp_path}", "--train-seconds=0"]
    assert train._train(args) == 0
    assert "rank 0/2: done" in capsys.readouterr().out
