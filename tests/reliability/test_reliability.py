"""Breaking things on purpose: a collector that is down, dies, comes back; SIGTERM;
fork; TLS and credentials. Every test is bounded in time.

The producer (``producer.py``) records numbered events; a receiver in this process
counts which numbers arrived, so a loss or a duplicate is seen exactly.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import run_python
from tests.support.waiting import wait_until
from torchelastic_otel.demo.collector import free_port, run_rotel, wait_port
from torchelastic_otel.receiver import OtlpGrpcReceiver, OtlpHttpReceiver

PRODUCER = Path(__file__).with_name("producer.py")


def _env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))}
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_BLRP_SCHEDULE_DELAY="100",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",  # seconds, as the Python SDK reads it
    )
    env.update(extra)
    return env


class Producer:
    """A running ``producer.py``: its output lines as they come, and its end.

    A thread reads stdout, so that a test can act when the producer is at a given
    point (``--progress`` lines), not after a given time.
    """

    def __init__(self, run_id: str, count: int, rate: float, env: dict[str, str], *flags: str):
        self.run_id = run_id
        self.proc = subprocess.Popen(
            [sys.executable, str(PRODUCER), run_id, str(count), str(rate), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=_read_lines, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=_read_lines, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def at(self, i: int, timeout_s: float = 60) -> int:
        """Wait until the producer recorded event ``i`` (``--progress``); its wall-clock ns."""
        line = wait_until(
            lambda: next(
                (x for x in self.lines if x.startswith("AT ") and int(x.split()[1]) >= i), None
            ),
            lambda x: x is not None or self.proc.poll() is not None,
            timeout_s,
            f"producer {self.run_id} at event {i} (lines so far: {self.lines[-3:]})",
        )
        assert line is not None, f"producer {self.run_id} ended before event {i}: {self.lines[-5:]}"
        return int(line.split()[2])

    def finish(self, timeout: float = 120) -> tuple[dict[str, Any], str]:
        """Wait for the end; (its COUNTS, its stderr)."""
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        err = "\n".join(self._err)
        counts = [line for line in self.lines if line.startswith("COUNTS ")]
        assert counts, f"rc={self.proc.returncode}\n{self.lines[-20:]}\n{err[-3000:]}"
        return json.loads(counts[-1].removeprefix("COUNTS ")), err

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def _read_lines(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


def _arrived(receiver: Any, run_id: str) -> Counter[int]:
    return Counter(
        int(r["attributes"]["torchelastic.i"])
        for r in list(receiver.received.logs)
        if r["attributes"].get("run_id") == run_id
    )


def _wait_arrivals(receiver: Any, run_id: str, n: int, timeout_s: float = 30) -> Counter[int]:
    """Wait until ``n`` of ``run_id``'s records arrived; fail with what did.

    Duplicates are looked for afterwards, once the collector in between was
    stopped (it forwards everything it holds before it exits), not after a pause.
    """
    return wait_until(
        lambda: _arrived(receiver, run_id),
        lambda arrived: sum(arrived.values()) >= n,
        timeout_s,
        f"{n} records of {run_id}",
    )


def _times(receiver: Any, run_id: str) -> dict[int, int]:
    """Each arrived event's record time (wall-clock ns), by its number."""
    return {
        int(r["attributes"]["torchelastic.i"]): int(r["time_unix_nano"])
        for r in list(receiver.received.logs)
        if r["attributes"].get("run_id") == run_id
    }


def _lost_logs(counts: dict[str, Any]) -> int:
    d = counts["drops"]
    return int(
        d["queue_full"]
        + d["invalid"]
        + d["export_failed_logs"]
        + d["shutdown_logs"]
        + d["disabled"]
    )


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver() as r:
        yield r


def test_collector_down_at_start_then_up(receiver: OtlpHttpReceiver, tmp_path: Path) -> None:
    """Nothing recorded after the collector came up is lost."""
    grpc_port, http_port = free_port(), free_port()
    n, rate = 600, 100.0  # 6 s
    producer = Producer("late-up", n, rate, _env(f"http://127.0.0.1:{grpc_port}"), "--progress")
    producer.at(150)  # well into the run, with nothing listening
    with run_rotel(receiver.endpoint, tmp_path, grpc_port, http_port):
        up_ns = time.time_ns()  # rotel listens on both ports by now
        counts, err = producer.finish()
        _wait_arrivals(receiver, "late-up", counts["exported"]["logs"])
    arrived = _arrived(receiver, "late-up")  # rotel stopped: all it forwarded is here
    assert producer.returncode == 0, err[-3000:]
    # Every event recorded once the collector listened arrived, once.
    recorded_at = _times(receiver, "late-up")
    after_up = [i for i, t in recorded_at.items() if t >= up_ns]
    first_after_up = min(after_up)
    assert first_after_up <= 400, (first_after_up, up_ns)  # the collector came up mid-run
    assert all(arrived[i] == 1 for i in range(first_after_up, n)), sorted(
        set(range(first_after_up, n)) - set(arrived)
    )
    assert max(arrived.values()) == 1
    # Our books balance exactly: every event was exported or counted as lost.
    assert counts["exported"]["logs"] + _lost_logs(counts) == n
    assert sum(arrived.values()) == counts["exported"]["logs"]


def test_collector_killed_and_restarted(receiver: OtlpHttpReceiver, tmp_path: Path) -> None:
    """Loss stays within the queue bound, and the counters account for every event."""
    grpc_port, http_port = free_port(), free_port()
    n, rate, queue = 800, 100.0, 100
    env = _env(f"http://127.0.0.1:{grpc_port}", OTEL_BLRP_MAX_QUEUE_SIZE=str(queue))
    with run_rotel(receiver.endpoint, tmp_path, grpc_port, http_port) as rotel:
        producer = Producer("restart", n, rate, env, "--progress")
        _wait_arrivals(receiver, "restart", 100)  # delivering, through rotel
        os.kill(rotel.process.pid, signal.SIGTERM)
        rotel.process.wait(timeout=10)
    producer.at(_last_at(producer) + 200)  # 200 more events recorded while it is down
    with run_rotel(receiver.endpoint, tmp_path, grpc_port, http_port):
        counts, err = producer.finish()
        _wait_arrivals(receiver, "restart", counts["exported"]["logs"])
    arrived = _arrived(receiver, "restart")  # rotel stopped: all it forwarded is here
    assert producer.returncode == 0, err[-3000:]
    lost = n - len(arrived)
    assert max(arrived.values()) == 1  # nothing exported twice
    # rotel acknowledged these, so they must have arrived:
    assert len(arrived) >= counts["exported"]["logs"]
    # ... and every event we did not export is counted, by reason.
    assert counts["exported"]["logs"] + _lost_logs(counts) == n
    # 200 events recorded while it was down; at most one queue of them (plus the
    # batch in flight when rotel stopped) may be lost.
    assert lost <= queue + 512, (lost, counts["drops"])
    assert lost > 0 or counts["drops"]["queue_full"] == 0


def _last_at(producer: Producer) -> int:
    """The number of the last event the producer said it recorded."""
    ats = [int(x.split()[1]) for x in producer.lines if x.startswith("AT ")]
    return ats[-1] if ats else 0


@pytest.mark.parametrize("collector", ["up", "down"])
def test_sigterm_mid_run_flushes_within_bound(
    receiver: OtlpHttpReceiver, tmp_path: Path, collector: str
) -> None:
    bound_s = 1.0
    with run_rotel(receiver.endpoint, tmp_path) as rotel:
        endpoint = rotel.grpc_endpoint if collector == "up" else f"http://127.0.0.1:{free_port()}"
        env = _env(endpoint, TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS=str(int(bound_s * 1000)))
        producer = Producer(
            f"sigterm-{collector}", 100_000, 2000.0, env, "--sigterm-exits", "--progress"
        )
        producer.at(2000)  # mid-run, with a full pipeline behind it
        sent = time.monotonic()
        producer.proc.send_signal(signal.SIGTERM)
        counts, _ = producer.finish(timeout=30)
        took = time.monotonic() - sent
        recorded = counts["exported"]["logs"] + _lost_logs(counts)
        _wait_arrivals(receiver, f"sigterm-{collector}", counts["exported"]["logs"])
    arrived = _arrived(receiver, f"sigterm-{collector}")
    assert producer.returncode == 143
    print(f"SIGTERM to exit: {took:.2f} s, of which the flush {counts['since_signal_s']:.2f} s")
    # The flush is bounded (20 ms polls and closing the exporters on top) ...
    assert counts["since_signal_s"] < bound_s + 0.25, counts["since_signal_s"]
    # ... and so is the whole exit: the interpreter's teardown after it, and the
    # signal's delivery to a busy process, take well under a second even on a
    # loaded machine; a hang (a gRPC channel, a thread join) would take far longer.
    assert took < bound_s + 1.5, took
    assert recorded > 1000
    if collector == "up":
        assert sum(arrived.values()) == counts["exported"]["logs"] > 0
        assert _lost_logs(counts) <= 2000  # at most the last second's worth
    else:
        assert counts["exported"]["logs"] == 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_forked_child_exports_its_own_events_once(
    receiver: OtlpHttpReceiver, tmp_path: Path, protocol: str
) -> None:
    with run_rotel(receiver.endpoint, tmp_path) as rotel:
        endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
        env = _env(endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol)
        producer = Producer(f"fork-{protocol}", 200, 200.0, env, "--fork")
        _, err = producer.finish()
        _wait_arrivals(receiver, f"fork-{protocol}", 201)
    arrived = _arrived(receiver, f"fork-{protocol}")  # rotel stopped: nothing more comes
    assert producer.returncode == 0, err[-3000:]
    assert arrived[-1] == 1, "the child's own event"
    assert {i: c for i, c in arrived.items() if c != 1} == {}, "duplicates"
    assert set(arrived) == {-1, *range(200)}


def _certificates(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, cert


@pytest.mark.skipif(
    not any(
        os.access(os.path.join(p, "openssl"), os.X_OK)
        for p in os.environ.get("PATH", "").split(":")
    ),
    reason="openssl is not installed",
)
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_and_auth_headers_never_logged(tmp_path: Path, protocol: str) -> None:
    key, cert = _certificates(tmp_path)
    secret = "s3cr3t-token-value"
    receiver_cm: Any = (
        OtlpGrpcReceiver(0, tls=(key.read_bytes(), cert.read_bytes()))
        if protocol == "grpc"
        else OtlpHttpReceiver(0, tls=(str(cert), str(key)))
    )
    with receiver_cm as r:
        wait_port(r.port)
        env = _env(
            r.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_CERTIFICATE=str(cert),
            OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{secret},x-tenant=ml",
        )
        env["LOGLEVEL"] = "DEBUG"
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
            f"sys.argv = ['p', 'tls', '50', '0']\n"
            f"exec(open({str(PRODUCER)!r}).read())\n"
        )
        proc = run_python(code, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # The producer flushed before it exited: all 50 are here, or will not come.
        arrived = _wait_arrivals(r, "tls", 50)
        headers = list(r.received.headers)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(arrived) == list(range(50)), proc.stderr[-3000:]
    assert any(h.get("authorization") == f"Bearer {secret}" for h in headers)
    assert any(h.get("x-tenant") == "ml" for h in headers)
    assert secret not in proc.stdout + proc.stderr
    # The same with a malformed header: still never printed.
    env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Bearer {secret}"
    bad = run_python(code.replace("'tls'", "'tls-bad'"), env=env, timeout=120)
    assert bad.returncode == 0, bad.stderr[-3000:]
    assert "OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not of the form" in bad.stderr
    assert secret not in bad.stdout + bad.stderr
