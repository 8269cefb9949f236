"""A worker for the elastic e2e tests: gloo all_reduce steps, driven by files.

Each step writes ``<dir>/progress.<round>.<node rank>`` (the step number; the round
is the rendezvous round every node of it agrees on), so that the test waits on
progress, not on time. The worker stops with success
when ``<dir>/finish`` exists and this attempt has made ``--min-steps`` steps; a
collective that fails (a peer vanished) raises, and the agent restarts the group.
Every loop is bounded (``--max-s``).

The process group meets under a store prefix of the rendezvous round (which every
node of the round agrees on), not torch's default ``/worker/attempt_<restart
count>``: after a membership change the survivors' restart counts differ (a node
restarted by a peer spends no restart), and a worker would then read a dead
worker's address under its attempt's prefix and fail gloo's connect, restart after
restart.
"""

import argparse
import os
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import torch
import torch.distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-s", type=float, default=240.0)
    args = parser.parse_args()
    node_rank = int(os.environ["GROUP_RANK"])
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    attributes = dict(
        unquote(kv).split("=", 1)
        for kv in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
        if "=" in kv
    )
    round_ = attributes.get("torchelastic.round", f"restart-{restart}")
    progress = args.dir / f"progress.{round_}.{node_rank}"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=timedelta(seconds=60),
    )
    dist.init_process_group(
        "gloo",
        store=dist.PrefixStore(f"elastic-loop/round-{round_}", store),
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        timeout=timedelta(seconds=60),
    )
    tensor = torch.ones(4)
    deadline = time.monotonic() + args.max_s
    step = 0
    while time.monotonic() < deadline:
        dist.all_reduce(tensor)
        step += 1
        progress.write_text(str(step))
        finished = (args.dir / "finish").exists() and step >= args.min_steps
        # Every rank decides together: one rank leaving the loop alone would hang the rest.
        flag = torch.tensor([1.0 if finished else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if flag.item() == 1.0:
            break
        time.sleep(0.05)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
