"""Run a local `rotel <https://pypi.org/project/rotel/>`_ OTLP collector.

rotel is a real OpenTelemetry collector shipped on PyPI (``pip install rotel``,
part of this package's ``demo`` and ``test`` extras). ``make demo``, the benchmarks
and the tests start it on 127.0.0.1 with free ports and stop it by PID.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rotel_binary() -> Path:
    """The ``rotel-agent`` executable inside the installed ``rotel`` package."""
    try:
        import rotel
    except ImportError:
        raise RuntimeError(
            "the rotel collector is not installed: pip install 'torchelastic-otel[demo]'"
        ) from None
    return Path(rotel.__file__).parent / "rotel-agent"


@dataclass
class Rotel:
    """A running rotel-agent: OTLP gRPC and HTTP receivers, OTLP/HTTP exporter."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log_path: Path

    @property
    def grpc_endpoint(self) -> str:
        """Where to send OTLP/gRPC."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Where to send OTLP/HTTP (the exporters add ``/v1/logs``, ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections; ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


@contextmanager
def run_rotel(
    forward_to: str | None,
    log_dir: Path,
    grpc_port: int | None = None,
    http_port: int | None = None,
) -> Iterator[Rotel]:
    """Start rotel on 127.0.0.1, forwarding OTLP/HTTP to ``forward_to``; stop it by PID.

    Args:
        forward_to: an OTLP/HTTP endpoint, or ``None`` to accept and discard everything.
        log_dir: where rotel's own output goes (``rotel-<grpc port>.log``).
        grpc_port: OTLP/gRPC receiver port (default: a free one).
        http_port: OTLP/HTTP receiver port (default: a free one).
    """
    grpc_port = grpc_port or free_port()
    http_port = http_port or free_port()
    log_path = log_dir / f"rotel-{grpc_port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(rotel_binary()),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{http_port}",
                *(
                    ["--exporter", "blackhole"]
                    if forward_to is None
                    else [
                        "--exporter",
                        "otlp",
                        "--otlp-exporter-endpoint",
                        forward_to,
                        "--otlp-exporter-protocol",
                        "http",
                    ]
                ),
                "--batch-timeout",
                "50ms",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    rotel = Rotel(process, grpc_port, http_port, log_path)
    try:
        wait_port(grpc_port)
        wait_port(http_port)
        yield rotel
    finally:
        rotel.stop()
