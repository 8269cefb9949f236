"""Hostile input to ``torchelastic-otel timeline --listen``: it answers, stays up, stays small.

One listener runs as the real command in a subprocess, and every request here is
sent to it: random bytes under every content type and encoding, truncated and
lying bodies, gzip and deflate bombs, a 1 GiB decompressed gzip body (1 MiB on the
wire), huge declared lengths, chunked bodies, deep JSON, and raw bytes and
oversized messages over gRPC. After each family a valid request must still be
taken; the listener's peak resident memory (``VmHWM``) is read before and after
the bombs. Derandomized, so the run is deterministic.
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.raw_http import post_raw
from torchelastic_otel.demo.collector import free_port

SETTINGS = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_MIB = 1 << 20
# The listener's limits (the defaults): 16 MiB on the wire, 32 MiB decompressed,
# four bodies at a time. Its peak may grow by what one refused bomb costs (the
# 32 MiB it inflated before refusing, and the allocator's slack), never by the bomb.
_PEAK_GROWTH_BOUND = 100 * _MIB

_LOGS_PATH = "/v1/logs"
_GRPC_LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


@dataclass
class Listener:
    """The running command: its process and ports."""

    proc: "subprocess.Popen[bytes]"
    http_port: int
    grpc_port: int
    stderr: Path

    def memory(self, field: str) -> int:
        """``VmRSS`` or ``VmHWM`` of the listener, in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} for pid {self.proc.pid}")

    def alive(self) -> None:
        assert self.proc.poll() is None, f"the listener exited: rc={self.proc.returncode}"


def _wait_for_text(
    path: Path, proc: "subprocess.Popen[bytes]", text: str, timeout_s: float
) -> None:
    """Wait until the file holds ``text``; fail with what it held at the deadline."""
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        seen = path.read_text(errors="replace")
        if text in seen:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout_s} s; stderr: {seen[-2000:]!r}")


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    http_port, grpc_port = free_port(), free_port()
    stderr = tmp_path_factory.mktemp("listener") / "stderr.txt"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torchelastic_otel.cli",
                "timeline",
                "--listen",
                "--http-port",
                str(http_port),
                "--grpc-port",
                str(grpc_port),
                "--max-items",
                "1000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, "COLUMNS": "100"},
        )
    try:
        _wait_for_text(stderr, proc, "receiving OTLP on", 60)
        yield Listener(proc, http_port, grpc_port, stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _post(
    port: int, body: bytes, headers: dict[str, str], path: str = _LOGS_PATH
) -> tuple[int, str]:
    """POST ``body`` with exactly ``headers``; (status, reason), or (0, why) if cut off."""
    try:
        status, reason, _ = post_raw(port, path, body, headers)
    except (ConnectionError, http.client.HTTPException) as e:
        return 0, type(e).__name__
    return status, reason


def _valid_log() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    record = LogRecord(event_name="fuzz.alive")
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    )
    return bytes(request.SerializeToString())


def _still_takes_data(listener: Listener) -> None:
    listener.alive()
    body = _valid_log()
    status, reason = _post(
        listener.http_port,
        body,
        {"Content-Type": "application/x-protobuf", "Content-Length": str(len(body))},
    )
    assert status == 200, (status, reason)
    assert _grpc_call(listener, body) == "OK"


def _grpc_call(listener: Listener, body: bytes, compression: Any = None) -> str:
    import grpc

    with grpc.insecure_channel(
        f"127.0.0.1:{listener.grpc_port}",
        options=[("grpc.max_send_message_length", -1)],
    ) as channel:
        call = channel.unary_unary(
            _GRPC_LOGS,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            call(body, timeout=30, compression=compression)
        except grpc.RpcError as e:
            return str(e.code().name)
    return "OK"


def _bomb(decompressed_mib: int, wbits: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = bytes(_MIB)
    return b"".join(z.compress(chunk) for _ in range(decompressed_mib)) + z.flush()


_CONTENT_TYPES = ["application/x-protobuf", "application/json", "text/plain", ""]
_ENCODINGS = ["", "gzip", "deflate", "br", "identity"]


@SETTINGS
@given(
    body=st.binary(max_size=4096)
    | st.builds(zlib.compress, st.binary(max_size=2048))
    | st.text(max_size=2048).map(str.encode),
    content_type=st.sampled_from(_CONTENT_TYPES),
    encoding=st.sampled_from(_ENCODINGS),
    path=st.sampled_from([_LOGS_PATH, "/v1/traces", "/v1/metrics", "/v1/nothing"]),
)
def test_http_random_bodies_are_answered_never_dropped(
    listener: Listener, body: bytes, content_type: str, encoding: str, path: str
) -> None:
    headers = {"Content-Length": str(len(body))}
    if content_type:
        headers["Content-Type"] = content_type
    if encoding:
        headers["Content-Encoding"] = encoding
    status, reason = _post(listener.http_port, body, headers, path)
    assert status in (200, 400, 404, 413, 415), (status, reason)
    assert "\n" not in reason
    listener.alive()


def test_http_lying_and_hostile_requests(listener: Listener) -> None:
    port = listener.http_port
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    cases: list[tuple[str, bytes, dict[str, str], set[int]]] = [
        ("no length", b"", {}, {411}),
        ("negative length", b"", {"Content-Length": "-5"}, {400}),
        ("length not a number", b"", {"Content-Length": "lots"}, {400}),
        ("300 MiB declared", b"", {"Content-Length": str(300 * _MIB)}, {413}),
        ("chunked", b"5\r\nhello\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"}, {411}),
        (
            "deep JSON",
            deep,
            {"Content-Length": str(len(deep)), "Content-Type": "application/json"},
            {400},
        ),
        (
            "JSON array",
            b"[]",
            {"Content-Length": "2", "Content-Type": "application/json"},
            {400},
        ),
    ]
    for name, body, headers, expected in cases:
        status, reason = _post(port, body, headers)
        assert status in expected, (name, status, reason)
    # A body shorter than its length, then the client goes: the listener lets go.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    # A request line that is not HTTP.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        s.recv(1024)
    _still_takes_data(listener)


def test_bombs_are_refused_and_memory_stays_bounded(listener: Listener) -> None:
    """A 1 GiB gzip body (1 MiB on the wire) took the listener to 2.1 GB before."""
    _still_takes_data(listener)
    before = listener.memory("VmHWM")
    gzip_bomb = _bomb(1024, 16 + zlib.MAX_WBITS)
    assert len(gzip_bomb) < 2 * _MIB
    for body, encoding in [
        (gzip_bomb, "gzip"),
        (_bomb(256, zlib.MAX_WBITS), "deflate"),
        (gzip_bomb + gzip_bomb, "gzip"),  # two members
    ]:
        status, reason = _post(
            listener.http_port,
            body,
            {
                "Content-Length": str(len(body)),
                "Content-Encoding": encoding,
                "Content-Type": "application/x-protobuf",
            },
        )
        assert status == 413, (encoding, status, reason)
    import grpc

    # gRPC: a 64 MiB message, and one of 256 MiB gzip-compressed by the client.
    assert _grpc_call(listener, bytes(64 * _MIB)) == "RESOURCE_EXHAUSTED"
    assert (
        _grpc_call(listener, bytes(256 * _MIB), compression=grpc.Compression.Gzip)
        == "RESOURCE_EXHAUSTED"
    )
    _still_takes_data(listener)
    after = listener.memory("VmHWM")
    growth = after - before
    print(
        f"listener peak RSS {before / _MIB:.0f} MiB before the bombs, {after / _MIB:.0f} MiB "
        f"after (+{growth / _MIB:.0f} MiB); RSS now {listener.memory('VmRSS') / _MIB:.0f} MiB"
    )
    assert growth < _PEAK_GROWTH_BOUND, f"peak RSS grew by {growth / _MIB:.0f} MiB"


@SETTINGS
@given(body=st.binary(max_size=4096))
def test_grpc_random_messages_are_answered(listener: Listener, body: bytes) -> None:
    assert _grpc_call(listener, body) in ("OK", "INTERNAL", "INVALID_ARGUMENT")
    listener.alive()


def test_what_is_kept_is_bounded_and_said(listener: Listener) -> None:
    """--max-items 1000: the listener keeps 1000 items, counts the rest and says so."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    many = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord()] * 1500)])]
    ).SerializeToString()
    status, reason = _post(
        listener.http_port,
        many,
        {"Content-Type": "application/x-protobuf", "Content-Length": str(len(many))},
    )
    assert status == 200, (status, reason)
    _still_takes_data(listener)
    listener.proc.send_signal(signal.SIGTERM)
    _wait_for_text(listener.stderr, listener.proc, "dropped the later", 60)
    err = listener.stderr.read_text()
    assert "kept the first 1,000 items (--max-items); dropped the later" in err, err[-2000:]
