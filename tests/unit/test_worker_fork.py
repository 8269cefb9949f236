"""A fork while the export worker is still importing the SDK.

A child forked in the middle of the worker's imports inherits modules that stay
half-initialised (their importing thread does not exist in the child), and its own
pipeline then fails on them ("partially initialized module"). The reliability test
``test_forked_child_exports_its_own_events_once`` lost the child's event that way
on a busy machine; these tests pin the mechanism down without timing luck: the
setup below is still running when the fork happens, every time.
"""

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.support.waiting import wait_until
from torchelastic_otel.otel import _worker
from torchelastic_otel.otel._ledger import Ledger
from torchelastic_otel.otel.settings import Settings


class _NoStage:
    def __init__(self) -> None:
        self.batches: list[object] = []

    def handle(self, item: object, t_ns: int) -> None:
        pass

    def tick(self, t_ns: int, collect: bool = False) -> None:
        pass

    def finish(self, t_ns: int) -> None:
        pass

    def close(self) -> None:
        pass


def _fork_and_wait(child_ok: Callable[[], bool]) -> tuple[int, float]:
    """Fork; the child exits 0 if ``child_ok()``; returns (child's exit code, fork's seconds)."""
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- the child
        os._exit(0 if child_ok() else 1)
    took = time.monotonic() - t0
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), took


@contextmanager
def _worker_in_setup(rest_of_setup: Callable[[], object]) -> Iterator[_worker.ExportWorker]:
    """A worker whose setup has begun (and runs ``rest_of_setup``); shut down after."""
    started = threading.Event()

    def setup(ledger: Ledger) -> _NoStage:
        started.set()
        rest_of_setup()
        return _NoStage()

    worker = _worker.ExportWorker(Settings(), setup=setup)  # type: ignore[arg-type]
    try:
        worker.submit("event", time.time_ns())
        assert started.wait(5)
        yield worker
    finally:
        worker.shutdown(2000)


def test_fork_waits_for_the_setup_to_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    # The setup submits to a thread pool, as the SDK's Resource.create does: the pool's
    # own fork hook takes the lock submit() needs, so if it ran before ours the fork
    # would wait for a setup that cannot finish until the bound ran out.
    monkeypatch.setattr(_worker, "_FORK_WAIT_S", 10.0)
    done = threading.Event()

    def rest_of_setup() -> None:
        time.sleep(0.3)
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: None).result(timeout=5)
        done.set()

    with _worker_in_setup(rest_of_setup):
        assert not done.is_set()
        code, took = _fork_and_wait(lambda: done.is_set() and not _worker._forked_mid_setup)
        assert code == 0, "the child was forked in the middle of the setup"
        assert took < 5.0, f"the fork waited {took:.1f} s: a hook deadlocked with the setup"


def test_fork_waits_no_longer_than_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "_FORK_WAIT_S", 0.2)
    release = threading.Event()

    def child_ok() -> bool:
        # The child knows why its own setup may fail, and its setup lock is free
        # (the parent's worker, which held it, does not exist here).
        return _worker._forked_mid_setup and _worker._setup_lock.acquire(timeout=1)

    with _worker_in_setup(lambda: release.wait(10)) as worker:
        try:
            code, took = _fork_and_wait(child_ok)
            assert code == 0
            assert 0.2 <= took < 3.0, took
            # The parent's lock was not taken by the fork: its worker still finishes.
            release.set()
            wait_until(lambda: worker._ready, bool, 5, "the worker's setup to finish")
        finally:
            release.set()


def test_fork_without_a_setup_does_not_wait() -> None:
    code, took = _fork_and_wait(lambda: not _worker._forked_mid_setup)
    assert code == 0
    assert took < 1.0, took
