"""tests/support/waiting.py: a wait that gives up says what it saw."""

import pytest

from tests.support.waiting import wait_until


def test_returns_the_awaited_reading() -> None:
    readings = iter(range(10))
    assert wait_until(lambda: next(readings), lambda n: n >= 3, 5, "three", 0) == 3


def test_gives_up_with_the_last_reading() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"waited 0 s for ten; last saw: \[1, 2\]"):
        wait_until(lambda: [1, 2], lambda got: len(got) >= 10, 0, "ten")


def test_gives_up_with_what_seen_shows_as_text() -> None:
    log = "agent 0: waiting\nagent 1: gone"
    with pytest.raises(pytest.fail.Exception) as failed:
        wait_until(lambda: False, bool, 0, "the job", seen=lambda: log)
    assert str(failed.value).endswith("last saw: " + log)
