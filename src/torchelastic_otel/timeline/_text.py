"""Durations as the timeline's views write them (the terminal and the goodput line).

Example::

    >>> secs(4.05), secs(150), secs(7200)
    ('4.0s', '2.5min', '2.0h')
"""


def secs(s: float) -> str:
    """``s`` seconds in the unit a reader takes in at a glance: s, then min past 2, h past 60."""
    if s >= 3600:
        return f"{s / 3600:.1f}h"
    if s >= 120:
        return f"{s / 60:.1f}min"
    return f"{s:.1f}s"
