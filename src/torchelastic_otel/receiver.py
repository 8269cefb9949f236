"""OTLP receivers (HTTP and gRPC, on 127.0.0.1 by default) that decode and keep what they
get: log records, spans and metric points.

The test suite puts it behind a real collector to see exactly what a backend would
see; ``make demo`` and the benchmarks use it to count and show a job's data;
``torchelastic-otel timeline --listen`` is one, possibly on every address.

**Limits.** Whatever arrives, a receiver keeps listening and its memory stays
bounded (:class:`Limits`):

* a request body larger than ``max_request_bytes`` on the wire, or larger than
  ``max_decompressed_bytes`` once inflated (a gzip bomb), is refused with 413 (gRPC:
  ``RESOURCE_EXHAUSTED``) without being held whole;
* a body that cannot be decoded is answered 400 with a one-line reason (in the
  HTTP reason phrase and in a ``google.rpc.Status`` body, JSON for JSON requests);
  an unknown ``Content-Encoding`` or ``Content-Type`` 415, a body without a
  ``Content-Length`` 411;
* at most ``concurrent_requests`` bodies are inflated and decoded at a time (the
  others wait; over gRPC at most ``pending_requests`` of them), and a client that
  stalls mid-request is dropped after ``timeout_s``;
* what is kept is bounded by :attr:`Received.max_items` (what the receiver is given).

OTLP/HTTP takes protobuf (``application/x-protobuf``) and JSON
(``application/json``), as the specification allows, and answers in kind.

Example::

    >>> with OtlpHttpReceiver() as receiver:  # doctest: +SKIP
    ...     ...  # point an exporter or collector at receiver.endpoint
    ...     received = receiver.wait_for(n_logs=10, timeout_s=5)
"""

import http.server
import json
import socket
import threading
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from torchelastic_otel.otlp_data import (
    OtlpRequestError,
    Received,
    decode_json_request,
    decode_protobuf_request,
)

SIGNALS = ("logs", "traces", "metrics")

_MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one request may cost a receiver (see the module docstring).

    Args:
        max_request_bytes: a body's size on the wire (HTTP; default 16 MiB).
        max_decompressed_bytes: a body's size once inflated, and a gRPC message's
            (default 32 MiB: a collector's default batch is well under 10 MiB).
        concurrent_requests: bodies inflated and decoded at once (HTTP), and
            requests served at once (gRPC); the others wait.
        pending_requests: gRPC requests received and waiting to be served; beyond
            them a request is refused ``RESOURCE_EXHAUSTED``, which exporters retry
            after a backoff (a 1,000-node job's agents exporting at once fit).
        timeout_s: how long an HTTP client may take to send its request.
    """

    max_request_bytes: int = 16 * _MIB
    max_decompressed_bytes: int = 32 * _MIB
    concurrent_requests: int = 4
    pending_requests: int = 1024
    timeout_s: float = 30.0


class PortInUseError(OSError):
    """A receiver could not listen: the port is taken."""


class _ThreadingHTTPServerV6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reachable(host: str) -> str:
    """The address a local client uses for a server listening on ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


class _RefusedError(Exception):
    """A request answered with an error status; ``reason`` is one line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# The gRPC status code of each HTTP error we answer, for the google.rpc.Status body.
_GRPC_CODE = {400: 3, 404: 12, 411: 3, 413: 8, 415: 3, 500: 13}

_PATH_KIND = {"/v1/logs": "logs", "/v1/traces": "spans", "/v1/metrics": "metrics"}
_KIND_SIGNAL = {"logs": "logs", "spans": "traces", "metrics": "metrics"}


_INFLATE_PIECE = 1 << 20


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed per ``Content-Encoding``, never past ``limit`` bytes.

    Raises:
        _RefusedError: 413 past the limit, 400 for a broken stream, 415 for an
            encoding that is not gzip, deflate or identity.
    """
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    if name == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        # HTTP's deflate is the zlib format; some clients send raw deflate.
        wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
        raise _RefusedError(415, f"Content-Encoding {encoding[:40]!r} is not gzip or deflate")
    out = bytearray()
    data = body
    try:
        while data:  # gzip may hold several members, one after the other
            d = zlib.decompressobj(wbits)
            while data and not d.eof:
                # A piece at a time: a refused bomb costs the limit, not twice it.
                out += d.decompress(data, _INFLATE_PIECE)
                if len(out) > limit:
                    raise _RefusedError(413, f"body larger than {limit:,} bytes once decompressed")
                data = d.unconsumed_tail
            if not d.eof:
                out += d.flush()  # at most a window's worth
                if len(out) > limit:
                    raise _RefusedError(413, f"body larger than {limit:,} bytes once decompressed")
            if not d.eof:
                raise _RefusedError(400, f"truncated {name} stream")
            data = d.unused_data if wbits > 16 else b""
    except zlib.error as e:
        raise _RefusedError(400, f"not a valid {name} stream: {e}") from None
    return bytes(out)


class OtlpHttpReceiver:
    """An OTLP/HTTP server on 127.0.0.1 that keeps every record it is sent.

    Args:
        port: the port to listen on (0: any free one).
        received: where to keep the data (default: a new :class:`Received`).
        tls: (certificate file, key file) to serve HTTPS.
        host: the address to listen on.
        signals: the signals it takes (``logs``, ``traces``, ``metrics``); the
            path of another answers 404, as a backend without it does.
        limits: what one request may cost (see :class:`Limits`).

    Raises:
        PortInUseError: ``port`` is taken.
    """

    def __init__(
        self,
        port: int = 0,
        received: Received | None = None,
        tls: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        signals: tuple[str, ...] = SIGNALS,
        limits: Limits | None = None,
    ) -> None:
        self.received = received if received is not None else Received()
        self.signals = signals
        self.limits = lim = limits or Limits()
        self.refused: dict[int, int] = {}  # HTTP status -> requests answered with it
        self._decoding = threading.BoundedSemaphore(max(1, lim.concurrent_requests))
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = lim.timeout_s  # a client that stalls mid-request is let go

            def do_POST(self) -> None:
                as_json = "json" in self.headers.get("Content-Type", "")
                try:
                    payload = receiver._serve(self)
                except _RefusedError as e:
                    receiver._count(e.status)
                    self._reply(e.status, _error_body(e, as_json), as_json, e.reason)
                    return
                except Exception as e:  # noqa: BLE001 -- one request, never the listener
                    receiver._count(500)
                    refusal = _RefusedError(500, f"{type(e).__name__}: {e}"[:200])
                    self._reply(500, _error_body(refusal, as_json), as_json, refusal.reason)
                    return
                self._reply(200, b"{}" if as_json else payload, as_json)

            def _reply(
                self, status: int, payload: bytes, as_json: bool, reason: str | None = None
            ) -> None:
                if status != 200:
                    # The body may be unread (too large, no length): do not parse
                    # its rest as the next request.
                    self.close_connection = True
                # The reason phrase is what exporters print: one safe line.
                phrase = None if reason is None else _phrase(reason)
                self.send_response(status, phrase)
                kind = "application/json" if as_json else "application/x-protobuf"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server_class: type[http.server.ThreadingHTTPServer] = http.server.ThreadingHTTPServer
        if ":" in host:
            server_class = _ThreadingHTTPServerV6
        try:
            self.server = server_class((host, port), Handler)
        except OSError as e:
            raise PortInUseError(
                f"cannot listen on {_hostport(host, port)} (HTTP): {e.strerror}"
            ) from None
        self.server.daemon_threads = True
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile=tls[0], keyfile=tls[1])
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.endpoint = f"{'https' if tls else 'http'}://{_hostport(_reachable(host), self.port)}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _count(self, status: int) -> None:
        with self.received.lock:
            self.refused[status] = self.refused.get(status, 0) + 1

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> bytes:
        """Read, check, inflate and decode one request; the reply's body."""
        path = handler.path.split("?", 1)[0].rstrip("/")
        kind = next((k for p, k in _PATH_KIND.items() if path.endswith(p)), None)
        if kind is None or _KIND_SIGNAL[kind] not in self.signals:
            raise _RefusedError(404, f"no OTLP service at {handler.path[:80]}")
        headers = handler.headers
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            raise _RefusedError(411, "send a Content-Length (chunked bodies are not taken)")
        length_text = headers.get("Content-Length")
        if length_text is None:
            raise _RefusedError(411, "Content-Length required")
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            raise _RefusedError(400, f"bad Content-Length {length_text[:40]!r}")
        limit = self.limits.max_request_bytes
        if length > limit:
            raise _RefusedError(413, f"body of {length:,} bytes is larger than {limit:,}")
        content_type = headers.get("Content-Type", "application/x-protobuf").split(";")[0]
        as_json = content_type.strip().lower() == "application/json"
        if not as_json and content_type.strip().lower() not in (
            "application/x-protobuf",
            "application/protobuf",
            "",
        ):
            raise _RefusedError(415, f"Content-Type {content_type[:60]!r} is not OTLP")
        body = handler.rfile.read(length)
        if len(body) < length:
            raise _RefusedError(400, f"body ended after {len(body):,} of {length:,} bytes")
        with self._decoding:
            body = inflate(
                body, headers.get("Content-Encoding", ""), self.limits.max_decompressed_bytes
            )
            try:
                if as_json:
                    items = decode_json_request(kind, body)
                else:
                    items = decode_protobuf_request(kind, body)
            except OtlpRequestError as e:
                raise _RefusedError(400, str(e)) from None
            del body
        self.received.add_headers(dict(headers))
        self.received.add_items(kind, items)
        return _OK[kind]

    def wait_for(self, n_logs: int, n_spans: int = 0, timeout_s: float = 20.0) -> Received:
        """Wait (bounded) until at least ``n_logs`` records and ``n_spans`` spans arrived.

        Raises:
            TimeoutError: at the deadline, saying how many arrived.
        """
        return self.received.wait_for(n_logs, n_spans, timeout_s)

    def __enter__(self) -> "OtlpHttpReceiver":
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ok_metrics() -> bytes:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )

    return bytes(ExportMetricsServiceResponse().SerializeToString())


_OK = {
    "logs": bytes(ExportLogsServiceResponse().SerializeToString()),
    "spans": bytes(ExportTraceServiceResponse().SerializeToString()),
    "metrics": _ok_metrics(),
}


def _phrase(reason: str) -> str:
    """``reason`` as an HTTP reason phrase: one line of printable ASCII."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in " ".join(reason.split()))
    return text[:200]


def _error_body(e: _RefusedError, as_json: bool) -> bytes:
    """A ``google.rpc.Status`` with the reason, as the OTLP specification asks."""
    code = _GRPC_CODE.get(e.status, 2)
    if as_json:
        return json.dumps({"code": code, "message": e.reason}).encode()
    try:
        from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
    except ImportError:  # googleapis-common-protos comes with the gRPC exporter
        return e.reason.encode("utf-8", "replace")
    return bytes(Status(code=code, message=e.reason).SerializeToString())


class OtlpGrpcReceiver:
    """An OTLP/gRPC server on 127.0.0.1 (logs and traces services).

    Args:
        port: the port to listen on (0: any free one).
        received: where to keep the data (default: a new :class:`Received`).
        tls: (private key PEM, certificate chain PEM) to serve TLS.
        host: the address to listen on.
        signals: the services it offers (``logs``, ``traces``, ``metrics``); a call
            to another answers UNIMPLEMENTED, as a backend without it does.
        limits: what one request may cost (see :class:`Limits`): a message larger
            than ``max_decompressed_bytes`` once decompressed, or beyond
            ``pending_requests`` waiting, is refused ``RESOURCE_EXHAUSTED``.

    Raises:
        PortInUseError: ``port`` is taken.
    """

    def __init__(
        self,
        port: int = 0,
        received: Received | None = None,
        tls: tuple[bytes, bytes] | None = None,
        host: str = "127.0.0.1",
        signals: tuple[str, ...] = SIGNALS,
        limits: Limits | None = None,
    ) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self.received = received if received is not None else Received()
        self.limits = lim = limits or Limits()
        store = self.received

        def keep(add: Any, request: Any, context: Any) -> None:
            store.add_headers(dict(context.invocation_metadata()))
            try:
                add(request)
            except (ValueError, RecursionError) as e:  # e.g. a string that is not UTF-8
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP: {e}"[:200])

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportLogsServiceResponse:  # noqa: N802
                keep(store.add_logs, request, context)
                return ExportLogsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportTraceServiceResponse:  # noqa: N802
                keep(store.add_spans, request, context)
                return ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                keep(store.add_metrics, request, context)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        workers = max(1, lim.concurrent_requests)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            # gRPC checks the message once decompressed: a gzip bomb stops there.
            options=[("grpc.max_receive_message_length", lim.max_decompressed_bytes)],
            maximum_concurrent_rpcs=workers + max(0, lim.pending_requests),
        )
        if "metrics" in signals:
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)  # type: ignore[no-untyped-call]
        if "logs" in signals:
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)  # type: ignore[no-untyped-call]
        if "traces" in signals:
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)  # type: ignore[no-untyped-call]
        address = _hostport(host, port)
        try:
            if tls is None:
                self.port = int(self.server.add_insecure_port(address))
            else:
                key, cert = tls
                credentials = grpc.ssl_server_credentials([(key, cert)])
                self.port = int(self.server.add_secure_port(address, credentials))
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise PortInUseError(f"cannot listen on {address} (gRPC): address in use")
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://{_hostport(_reachable(host), self.port)}"

    def __enter__(self) -> "OtlpGrpcReceiver":
        self.server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.stop(grace=1).wait(timeout=5)
