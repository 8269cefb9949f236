"""A training loop (gloo all_reduce + optimizer.step) whose stalling rank is driven by files.

Arguments: the control directory, the global rank that stalls. Each rank writes
``stepping-<rank>`` after its first steps; when ``stop`` appears, the stalling rank
writes ``stopped`` (with its time) and stops stepping until ``resume`` appears (the
other ranks then wait in their all_reduce); every rank finishes after its steps
resumed. Every wait is bounded: a worker that waits too long exits with an error.
"""

import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

WAIT_S = 120.0
STEPS_AFTER_RESUME = 20


def main() -> None:
    control, stalling = Path(sys.argv[1]), int(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    deadline = time.monotonic() + WAIT_S
    step = 0
    stalled = False  # this rank (the stalling one) stalled and resumed
    resumed_at: int | None = None  # the step all ranks agree the stall ended at
    while resumed_at is None or step < resumed_at + STEPS_AFTER_RESUME:
        if time.monotonic() > deadline:
            sys.exit(f"rank {rank}: the test did not drive the job within {WAIT_S} s")
        if rank == stalling and not stalled and (control / "stop").exists():
            (control / "stopped").write_text(repr(time.time()))
            while not (control / "resume").exists():  # the others wait in all_reduce
                if time.monotonic() > deadline:
                    sys.exit(f"rank {rank}: no resume file within {WAIT_S} s")
                time.sleep(0.05)
            stalled = True
        optimizer.zero_grad()
        loss = model(torch.ones(4)).sum()
        loss.backward()
        for p in model.parameters():
            assert p.grad is not None
            dist.all_reduce(p.grad)
        # Every rank learns at the same step that the stall is over: same step counts.
        done = torch.tensor([1.0 if stalled else 0.0])
        dist.all_reduce(done, op=dist.ReduceOp.MAX)
        optimizer.step()  # counted by the bootstrap's hook: no other code for progress
        step += 1
        if step == 5:
            (control / f"stepping-{rank}").write_text(str(step))
        if resumed_at is None and done.item() > 0:
            resumed_at = step
        time.sleep(0.02)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
