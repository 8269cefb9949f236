"""Run a real multi-node torchrun job on 127.0.0.1: one torchrun agent per "node".

Used by ``make demo`` and the end-to-end tests. Every agent is a real ``torchrun``
process; they meet through the c10d rendezvous on a free local port.
"""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torchelastic_otel.demo.collector import free_port


@dataclass
class JobResult:
    """What a job did: each agent's exit code and output, and the wall time."""

    run_id: str
    returncodes: list[int]
    wall_s: float
    outputs: list[str]

    @property
    def returncode(self) -> int:
        """The job's exit code: the first non-zero agent's, else 0."""
        return next((rc for rc in self.returncodes if rc != 0), 0)


def torchrun_command() -> list[str]:
    """``torchrun`` next to this interpreter, else ``python -m torch.distributed.run``."""
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def run_job(
    run_id: str,
    *,
    nnodes: int = 2,
    nproc_per_node: int = 2,
    event_log_handler: str = "otel",
    fail_once_ranks: Sequence[int] = (),
    fail_times: int = 1,
    max_restarts: int = 1,
    train_seconds: float = 2.0,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 240.0,
    work_dir: Path | None = None,
    launcher: Sequence[str] | None = None,
    node_env: Callable[[int], Mapping[str, str]] | None = None,
    extra_args: Sequence[str] = (),
    command: Sequence[str] | None = None,
) -> JobResult:
    """Start ``nnodes`` torchrun agents for one job and wait for all of them (bounded).

    Args:
        run_id: the rendezvous id (``--rdzv-id``), the job's ``run_id``.
        event_log_handler: torchrun's ``--event_log_handler``.
        fail_once_ranks: global ranks whose workers fail on their first attempt.
        fail_times: ... on their first ``fail_times`` attempts.
        max_restarts: torchrun's ``--max-restarts``.
        train_seconds: how long each worker "trains".
        env: the agents' environment (default: this process's).
        timeout_s: the whole job's time limit; agents still running then are killed.
        work_dir: where the failure marker lives (default: a temporary directory).
        launcher: the command that runs torchrun's arguments (default: ``torchrun``).
        node_env: more environment for the agent of each node, by node index.
        extra_args: more torchrun arguments.
        command: what each worker runs (torchrun's arguments after its own),
            instead of the demo's training script.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        args = [
            *(launcher or torchrun_command()),
            f"--nnodes={nnodes}",
            f"--nproc-per-node={nproc_per_node}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}",
            f"--rdzv-id={run_id}",
            f"--max-restarts={max_restarts}",
            "--monitor-interval=0.2",
            f"--event-log-handler={event_log_handler}",
            *extra_args,
            *(
                command
                or (
                    "-m",
                    "torchelastic_otel.demo.train",
                    f"--fail-once-ranks={','.join(map(str, fail_once_ranks))}",
                    f"--fail-times={fail_times}",
                    f"--marker-dir={tmp}",
                    f"--train-seconds={train_seconds}",
                )
            ),
        ]
        full_env = dict(os.environ if env is None else env)
        # One thread per worker: 4 workers share 2 cores here.
        full_env.setdefault("OMP_NUM_THREADS", "1")
        start = time.monotonic()
        procs = []
        logs = []
        for node in range(nnodes):
            log = open(Path(tmp) / f"agent-{node}.log", "w+")  # noqa: SIM115 -- closed below
            logs.append(log)
            env_of_node = {**full_env, **(node_env(node) if node_env else {})}
            procs.append(
                subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env_of_node)
            )
        deadline = start + timeout_s
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(timeout=30))
        wall = time.monotonic() - start
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
    return JobResult(run_id=run_id, returncodes=codes, wall_s=wall, outputs=outputs)
