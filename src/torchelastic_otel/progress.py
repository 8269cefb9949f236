"""Training progress, told to the torchrun agent: no code at all, or one call per step.

Under torchrun with ``--event_log_handler otel``, every worker reports its steps to
its agent, which says when a worker stops making progress (a hung collective, a
dead data loader) and when it resumes (docs/mapping.md, "Stalled progress").

* A loop that calls ``optimizer.step()`` needs nothing: the agent starts each worker
  with a bootstrap that installs torch's global optimizer step hook when
  ``torch.optim`` is imported (every ``optimizer.step()`` of every optimizer counts).
* Any other loop calls :func:`step` once per step (or more often: what counts is
  that the count moves)::

      import torchelastic_otel.progress as progress

      for batch in loader:
          train_step(batch)
          progress.step()

Outside such a worker (no ``TORCHELASTIC_OTEL_PROGRESS_FILE``), :func:`step` does
nothing. It never raises and never blocks: the count and the time go into a small
memory-mapped file (on ``/dev/shm`` where there is one) that the agent reads; a step
is a ``struct.pack_into`` into shared memory, with no system call.

The file (:data:`SIZE` bytes, little-endian): ``magic`` (4 bytes), ``version`` (u16),
``flags`` (u16; bit 0: the worker exited normally), ``step`` (u64: the reports so
far) and ``time`` (f64: ``time.monotonic()`` of the last one; monotonic clocks are
system-wide, so the agent's and the worker's agree), then the worker's pid (u32).
This module imports nothing beyond the standard library: the bootstrap imports it
in every worker.
"""

import atexit
import mmap
import os
import struct
import time
from collections.abc import Callable
from typing import Any, Final

PROGRESS_FILE: Final = "TORCHELASTIC_OTEL_PROGRESS_FILE"
"""Set by the agent in each worker's environment: the file the worker's steps go to.
(The agent's side of the contract; users set ``TORCHELASTIC_OTEL_STALL_TIMEOUT_S``.)"""

MAGIC: Final = b"TEOP"
VERSION: Final = 1
SIZE: Final = 32
FINISHED: Final = 1
"""``flags`` bit: the worker's interpreter exited normally (its steps are over)."""

_HEADER = struct.Struct("<4sHH")  # magic, version, flags at offset 0
_STEP = struct.Struct("<Qd")  # step, time at offset 8
_PID = struct.Struct("<I")  # at offset 24
_FLAGS_AT = 6
_STEP_AT = 8
_PID_AT = 24


def create(path: str) -> None:
    """Create an empty progress file for a worker about to start (the agent's side).

    Example::

        >>> create("/dev/shm/p-0")  # doctest: +SKIP
        >>> read(open("/dev/shm/p-0", "rb").read())  # doctest: +SKIP
        (0, 0.0, False)
    """
    data = bytearray(SIZE)
    _HEADER.pack_into(data, 0, MAGIC, VERSION, 0)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(buffer: Any) -> tuple[int, float, bool] | None:
    """``(step, time, finished)`` from a progress file's bytes; ``None`` if not one.

    A reader may see a write half done: read twice until two reads agree (the
    agent does, :mod:`torchelastic_otel.otel._progress`).
    """
    if len(buffer) < SIZE:
        return None
    magic, version, flags = _HEADER.unpack_from(buffer, 0)
    if magic != MAGIC or version != VERSION:
        return None
    step, at = _STEP.unpack_from(buffer, _STEP_AT)
    return step, at, bool(flags & FINISHED)


class Reporter:
    """Writes one worker's steps into its progress file (opened on the first step).

    Args:
        path: the progress file (``None``: report nothing).
        clock: the time written with each step (``time.monotonic``).
    """

    def __init__(self, path: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.count = 0
        self._clock = clock
        self._map: mmap.mmap | None = None
        self._tried = path is None  # True: no (more) attempt to open the file

    def step(self, n: int | None = None) -> None:
        """One more step (or the count ``n``); never raises, never blocks."""
        try:
            self.count = self.count + 1 if n is None else int(n)
            mapped = self._map
            if mapped is None:
                if self._tried:
                    return
                mapped = self._open()
                if mapped is None:
                    return
            _STEP.pack_into(mapped, _STEP_AT, self.count, self._clock())
        except Exception:  # noqa: BLE001, S110 -- training must never fail because of us
            pass

    def on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """torch's global optimizer step post-hook: one step per ``optimizer.step()``."""
        self.step()

    def finish(self) -> None:
        """Mark the worker's steps as over (at its exit): the agent stops watching it."""
        mapped = self._map
        if mapped is None:
            return
        try:
            flags = struct.unpack_from("<H", mapped, _FLAGS_AT)[0]
            struct.pack_into("<H", mapped, _FLAGS_AT, flags | FINISHED)
        except (ValueError, TypeError):  # closed or not ours: nothing to mark
            pass

    def detach(self) -> None:
        """Stop reporting (a forked child: the file is its parent's)."""
        self._map = None
        self._tried = True

    def _open(self) -> mmap.mmap | None:
        self._tried = True
        path = self.path
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < SIZE:
                return None
            mapped = mmap.mmap(fd, SIZE)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)  # the mapping stays valid
        if read(mapped) is None:
            mapped.close()
            return None
        _PID.pack_into(mapped, _PID_AT, os.getpid() & 0xFFFFFFFF)
        self._map = mapped
        atexit.register(self.finish)
        return mapped


_reporter = Reporter(os.environ.get(PROGRESS_FILE) or None)
os.register_at_fork(after_in_child=_reporter.detach)
_hook_handle: Any = None


def step(n: int | None = None) -> None:
    """Report one training step to the torchrun agent (or set the count to ``n``).

    For loops that do not call ``optimizer.step()`` (whose steps are counted by
    themselves). Costs well under a microsecond; does nothing outside a worker
    started by an agent exporting to ``otel``; never raises.

    Args:
        n: the step count now, if the loop keeps its own; by default one more.

    Example::

        >>> import torchelastic_otel.progress as progress
        >>> progress.step()
    """
    _reporter.step(n)


def install_optimizer_hook() -> bool:
    """Count every ``optimizer.step()`` of this process as a step (once; needs torch).

    The bootstrap calls it when ``torch.optim`` is imported; call it yourself where
    the bootstrap does not run (a worker started by ``elastic_launch`` with a Python
    function). Returns whether the hook is installed.
    """
    global _hook_handle  # noqa: PLW0603 -- one hook per process
    if _hook_handle is not None:
        return True
    if _reporter.path is None:
        return False
    try:
        from torch.optim.optimizer import register_optimizer_step_post_hook
    except ImportError:
        return False
    _hook_handle = register_optimizer_step_post_hook(_reporter.on_optimizer_step)
    return True
