"""A torchrun agent that also writes every event it records to a JSON-lines file.

Run in place of ``torchrun`` (``CAPTURE_OUT=node-0.jsonl python
benchmarks/capture_agent.py <torchrun arguments>``): it registers a destination
``capture`` in torch's events module that appends one JSON line per event (its time
and torch's JSON), routes the rendezvous' events there too, installs this package's
torchrun integration for that destination (the cycle events and the worker failures
torch does not record, exactly what ``--event_log_handler otel`` would see), then
runs torchrun.
``capture_stream.py`` starts one per node; ``bench_scale.py`` replays the files.
"""

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path


class CaptureHandler(logging.Handler):
    """Appends each record's event JSON, with the time it was recorded."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = path.open("a", encoding="utf-8")
        self._lock_file = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.msg
        text = message if isinstance(message, str) else message.serialize()
        line = json.dumps({"t_ns": time.time_ns(), "event": json.loads(text)})
        with self._lock_file:
            self._file.write(line + "\n")
            self._file.flush()


def main() -> None:
    out = Path(os.environ["CAPTURE_OUT"])
    import torch.distributed.elastic.events.handlers as torch_handlers
    from torch.distributed import run

    from torchelastic_otel import integration
    from torchelastic_otel.integration import agent

    handler = CaptureHandler(out)
    torch_handlers._log_handlers["capture"] = handler
    torch_handlers._log_handlers["dynamic_rendezvous"] = handler
    integration.install(rdzv_events=False)
    agent.capture_for.add("capture")
    sys.argv = ["torchrun", *sys.argv[1:]]
    run.main()


if __name__ == "__main__":
    main()
