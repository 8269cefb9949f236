"""Each worker's progress, watched by its agent (the worker side needs no code change).

Called from the wrapped ``_setup_local_watchdog`` (:mod:`.workers`), just before the
agent starts its workers, for agents exporting to ``otel``:

* a fresh progress file per worker (:func:`torchelastic_otel.progress.create`), in a
  directory of this agent's on ``/dev/shm`` (memory: a step never waits on a disk),
  else the temporary directory; the previous cycle's files are removed (their
  workers are stopped by now), the directory at the agent's exit;
* in each worker's environment, ``TORCHELASTIC_OTEL_PROGRESS_FILE`` and the
  package's bootstrap directory first on ``PYTHONPATH`` (its ``sitecustomize``
  counts ``optimizer.step()``, then runs the one it shadows);
* a :class:`~torchelastic_otel.otel._progress.ProgressWatch` queued for the export
  worker, which reads the files from then on.

Off with ``TORCHELASTIC_OTEL_STALL_TIMEOUT_S=0`` or ``OTEL_SDK_DISABLED=true``: the
workers' environment is then left as it was.
"""

import atexit
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import torchelastic_otel
from torchelastic_otel import progress

WHAT = "watching the workers' progress (stalls)"
PYTHONPATH = "PYTHONPATH"
BOOTSTRAP_DIR = os.path.join(os.path.dirname(torchelastic_otel.__file__), "_bootstrap")
"""Holds the workers' ``sitecustomize.py``."""

_SHM = "/dev/shm"  # noqa: S108 -- a memory file system, the files are private (0600)
_dir: str | None = None
_files: list[str] = []
_starts = 0


def add_progress_files(agent: Any, envs: Mapping[int, MutableMapping[str, str]]) -> None:
    """Give each worker of ``agent``'s group a progress file; watch them."""
    from torchelastic_otel.otel import _pipeline
    from torchelastic_otel.otel._progress import ProgressWatch, WatchedWorker

    global _starts  # noqa: PLW0603 -- one agent per process
    pipeline = _pipeline.current()
    if pipeline.settings.stall_timeout_s <= 0 or pipeline.settings.disabled:
        return
    group = agent._worker_group
    run_id = group.spec.rdzv_handler.get_run_id()
    workers = {w.local_rank: w for w in group.workers}
    directory = _directory()
    _remove_previous()
    _starts += 1
    watched = []
    for local_rank, env in envs.items():
        worker = workers.get(local_rank)
        if worker is None:
            continue
        path = os.path.join(directory, f"{_starts}-{local_rank}.progress")
        progress.create(path)
        _files.append(path)
        env[progress.PROGRESS_FILE] = path
        env[PYTHONPATH] = with_bootstrap(env.get(PYTHONPATH, os.environ.get(PYTHONPATH, "")))
        watched.append(WatchedWorker(local_rank, worker.global_rank, path))
    pipeline.submit(ProgressWatch(run_id, group.group_rank, tuple(watched)), time.time_ns())


def with_bootstrap(pythonpath: str) -> str:
    """``pythonpath`` with the bootstrap directory first (once).

    Example::

        >>> with_bootstrap("/opt/lib").endswith(os.pathsep + "/opt/lib")
        True
    """
    rest = [p for p in pythonpath.split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    return os.pathsep.join([BOOTSTRAP_DIR, *rest])


def _directory() -> str:
    global _dir  # noqa: PLW0603 -- one directory per agent process
    if _dir is None or not os.path.isdir(_dir):
        base = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None
        _dir = tempfile.mkdtemp(prefix=f"torchelastic-otel-{os.getpid()}-", dir=base)
        atexit.register(_cleanup, os.getpid(), _dir)
    return _dir


def _cleanup(pid: int, directory: str) -> None:
    if os.getpid() == pid:  # not in a forked child that exits through atexit
        shutil.rmtree(directory, ignore_errors=True)


def _remove_previous() -> None:
    for path in _files:
        with contextlib.suppress(OSError):
            os.unlink(path)
    _files.clear()
