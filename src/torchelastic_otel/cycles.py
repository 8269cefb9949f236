"""What keys a restart cycle, shared by the exporter and the timeline (no OpenTelemetry here).

A node's part in a cycle is keyed by the rendezvous round when it is known (every node
of the round agrees on it), else by the agent's restart count. A healthy node
restarted by a peer spends none of its own budget, so its restart count can repeat:
the second and third cycles with count 0 on a node are ``0.1`` and ``0.2``. The
exporter derives a cycle's trace and span ids from this key (docs/mapping.md,
"Traces") and writes a repeated one as ``torchelastic.cycle.key``; the timeline reads
it back, so that the two never disagree on which cycles are one.

Example::

    >>> CycleKey.on_node(0, [0, 0])
    CycleKey(number=0, occurrence=2)
    >>> str(CycleKey(0, 2)), CycleKey(3).id_key
    ('0.2', 3)
    >>> CycleKey.parse("0.1"), CycleKey.parse("x")
    (CycleKey(number=0, occurrence=1), None)
"""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class CycleKey:
    """A cycle's key on a node: a number (round or restart count) and its occurrence.

    ``occurrence`` counts earlier cycles of this node with the same ``number`` (only
    restart counts repeat: a round never does).
    """

    number: int
    occurrence: int = 0

    @classmethod
    def on_node(cls, number: int, seen: Iterable[int]) -> "CycleKey":
        """The key of a new cycle numbered ``number`` on a node that saw ``seen`` before."""
        return cls(number, sum(1 for n in seen if n == number))

    @classmethod
    def parse(cls, text: object) -> "CycleKey | None":
        """``"3"`` or ``"0.1"`` (as :attr:`id_key` writes it); ``None`` if it is neither."""
        if isinstance(text, bool):
            return None
        if isinstance(text, int):
            return cls(text)
        number, _, occurrence = str(text).partition(".")
        if not number.lstrip("-").isdigit() or (occurrence and not occurrence.isdigit()):
            return None
        return cls(int(number), int(occurrence or 0))

    @property
    def repeated(self) -> bool:
        """A restart count this node saw before (so no round was known)."""
        return self.occurrence > 0

    @property
    def id_key(self) -> int | str:
        """What the cycle's ids derive from: the number, or ``"<number>.<occurrence>"``."""
        return self.number if not self.occurrence else f"{self.number}.{self.occurrence}"

    def __str__(self) -> str:
        return str(self.id_key)
