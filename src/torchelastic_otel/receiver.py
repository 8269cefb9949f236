"""OTLP receivers (HTTP and gRPC, on 127.0.0.1 by default) that decode and keep what they
get: log records, spans and metric points.

The test suite puts it behind a real collector to see exactly what a backend would
see; ``make demo`` and the benchmarks use it to count and show a job's data.

Example::

    >>> with OtlpHttpReceiver() as receiver:  # doctest: +SKIP
    ...     ...  # point an exporter or collector at receiver.endpoint
    ...     received = receiver.wait_for(n_logs=10, timeout_s=5)
"""

import gzip
import http.server
import socket
import threading
import zlib
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from torchelastic_otel.otlp_data import Received

SIGNALS = ("logs", "traces", "metrics")


class PortInUseError(OSError):
    """A receiver could not listen: the port is taken."""


class _ThreadingHTTPServerV6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reachable(host: str) -> str:
    """The address a local client uses for a server listening on ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


class OtlpHttpReceiver:
    """An OTLP/HTTP server on 127.0.0.1 that keeps every record it is sent.

    Args:
        port: the port to listen on (0: any free one).
        received: where to keep the data (default: a new :class:`Received`).
        tls: (certificate file, key file) to serve HTTPS.
        host: the address to listen on.
        signals: the signals it takes (``logs``, ``traces``, ``metrics``); the
            path of another answers 404, as a backend without it does.

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
    ) -> None:
        self.received = received if received is not None else Received()
        self.signals = signals
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                reply = receiver._accept(self.path, body, dict(self.headers))
                self.send_response(200 if reply is not None else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                payload = reply or b""
                self.send_header("Content-Length", str(len(payload)))
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
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile=tls[0], keyfile=tls[1])
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.endpoint = f"{'https' if tls else 'http'}://{_hostport(_reachable(host), self.port)}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _accept(self, path: str, body: bytes, headers: dict[str, str]) -> bytes | None:
        if path.rsplit("/", 1)[-1] not in self.signals:
            return None
        self.received.add_headers(headers)
        if path.endswith("/v1/logs"):
            self.received.add_logs(ExportLogsServiceRequest.FromString(body))
            return bytes(ExportLogsServiceResponse().SerializeToString())
        if path.endswith("/v1/traces"):
            self.received.add_spans(ExportTraceServiceRequest.FromString(body))
            return bytes(ExportTraceServiceResponse().SerializeToString())
        if path.endswith("/v1/metrics"):
            from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
                ExportMetricsServiceRequest,
                ExportMetricsServiceResponse,
            )

            self.received.add_metrics(ExportMetricsServiceRequest.FromString(body))
            return bytes(ExportMetricsServiceResponse().SerializeToString())
        return None

    def wait_for(self, n_logs: int, n_spans: int = 0, timeout_s: float = 20.0) -> Received:
        """Wait (bounded) until at least ``n_logs`` records and ``n_spans`` spans arrived."""
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


class OtlpGrpcReceiver:
    """An OTLP/gRPC server on 127.0.0.1 (logs and traces services).

    Args:
        port: the port to listen on (0: any free one).
        received: where to keep the data (default: a new :class:`Received`).
        tls: (private key PEM, certificate chain PEM) to serve TLS.
        host: the address to listen on.
        signals: the services it offers (``logs``, ``traces``, ``metrics``); a call
            to another answers UNIMPLEMENTED, as a backend without it does.

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
        store = self.received

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportLogsServiceResponse:  # noqa: N802
                store.add_headers(dict(context.invocation_metadata()))
                store.add_logs(request)
                return ExportLogsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> ExportTraceServiceResponse:  # noqa: N802
                store.add_headers(dict(context.invocation_metadata()))
                store.add_spans(request)
                return ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                store.add_headers(dict(context.invocation_metadata()))
                store.add_metrics(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
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
