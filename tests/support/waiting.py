"""Waiting on a condition, bounded, and failing with what was seen.

Tests wait for something to happen, never for time to pass: :func:`wait_until`
polls a reading until a predicate holds and, at its deadline, fails the test with
the last reading (a poll that falls through silently hides the very failure it
should report).

Example::

    arrived = wait_until(lambda: len(receiver.received.logs), lambda n: n >= 10, 20,
                         "log records at the receiver")
"""

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    read: Callable[[], T],
    done: Callable[[T], bool],
    timeout_s: float,
    what: str,
    poll_s: float = 0.05,
    seen: Callable[[], object] | None = None,
) -> T:
    """Poll ``read()`` until ``done(reading)``; return that reading.

    Args:
        read: what to look at (called at least once).
        done: whether the reading is the awaited one.
        timeout_s: the bound.
        what: what is awaited, for the failure message.
        poll_s: the interval between readings.
        seen: what to show at the deadline instead of the last reading (the job's
            logs, say, when the reading is only ``False``), as text and uncapped.

    Raises:
        pytest.fail.Exception: at the deadline, with the last reading (or ``seen()``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        got = read()
        if done(got):
            return got
        if time.monotonic() >= deadline:
            # The reading is capped (it can be every record received); what ``seen``
            # shows is the caller's to size, and is shown as text (logs keep their lines).
            shown = repr(got)[:4000] if seen is None else str(seen())
            pytest.fail(f"waited {timeout_s:g} s for {what}; last saw: {shown}")
        time.sleep(poll_s)
