"""Span and trace ids that do not depend on the application's ``random`` seed.

The SDK's ``RandomIdGenerator`` draws from the global ``random`` module, and
training scripts call ``random.seed(seed)`` with the same seed on every rank: two
such processes then generate the same span ids, and their spans collide inside
one trace. :class:`SeedIndependentIds` draws from a generator of its own, seeded
from ``os.urandom`` and seeded again in a forked child (which would otherwise
repeat its parent's ids).

:class:`ForcedIds` wraps a generator so that the state machine can fix the ids
of the next span it starts (spans whose ids every node derives, or that a worker
was told before it started).
"""

import os
import random
import weakref

from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

_generators: "weakref.WeakSet[SeedIndependentIds]" = weakref.WeakSet()


class SeedIndependentIds(IdGenerator):
    """Random ids from a private ``random.Random`` seeded by the OS.

    Example::

        >>> import random
        >>> random.seed(0); a = SeedIndependentIds().generate_span_id()
        >>> random.seed(0); b = SeedIndependentIds().generate_span_id()
        >>> a != b
        True
    """

    def __init__(self) -> None:
        # Ids need uniqueness, not secrecy: a fast PRNG seeded by the OS is enough.
        self._random = random.Random(os.urandom(32))  # noqa: S311
        _generators.add(self)

    def reseed(self) -> None:
        """Seed again from the OS (done in every forked child)."""
        self._random.seed(os.urandom(32))

    def generate_span_id(self) -> int:
        """A random non-zero 64-bit span id."""
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        """A random non-zero 128-bit trace id."""
        return self._random.getrandbits(128) or 1


def _reseed_all_in_child() -> None:
    for generator in list(_generators):
        generator.reseed()


os.register_at_fork(after_in_child=_reseed_all_in_child)


def seed_independent(inner: IdGenerator | None) -> IdGenerator:
    """``inner``, unless it is the SDK's seed-dependent default (or absent)."""
    if inner is None or type(inner) is RandomIdGenerator:
        return SeedIndependentIds()
    return inner


class ForcedIds(IdGenerator):
    """The inner generator's ids, except for the next span when ids were forced."""

    def __init__(self, inner: IdGenerator | None = None) -> None:
        self._inner = seed_independent(inner)
        self._next: tuple[int, int] | None = None

    def force_next(self, trace_id: int, span_id: int) -> None:
        """Make the next span started as a root use these ids."""
        self._next = (trace_id, span_id)

    def force_next_span_id(self, span_id: int) -> None:
        """Make the next span (a child: its trace id comes from its parent) use this id."""
        self._next = (0, span_id)

    def generate_trace_id(self) -> int:
        """The forced trace id if one is pending, else the inner generator's."""
        if self._next is not None and self._next[0]:
            return self._next[0]
        return self._inner.generate_trace_id()

    def generate_span_id(self) -> int:
        """The forced span id if one is pending (consuming it), else the inner one's."""
        if self._next is not None:
            span_id = self._next[1]
            self._next = None
            return span_id
        return self._inner.generate_span_id()

    def is_trace_id_random(self) -> bool:
        """Forced trace ids are hashes of the run id, not random."""
        return False
