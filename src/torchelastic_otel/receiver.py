"""An OTLP/HTTP receiver on 127.0.0.1 that decodes and keeps what it is sent.

The test suite puts it behind a real collector to see exactly what a backend would
see; ``make demo`` and the benchmarks use it to count and show a job's data.

Example::

    >>> with OtlpHttpReceiver() as receiver:  # doctest: +SKIP
    ...     ...  # point an exporter or collector at receiver.endpoint
    ...     received = receiver.wait_for(n_logs=10, timeout_s=5)
"""

import gzip
import http.server
import threading
import time
import zlib
from dataclasses import dataclass, field
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
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(v: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs(kvs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` attributes as a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class Received:
    """Flattened log records and spans, with their resource attributes."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


class OtlpHttpReceiver:
    """An OTLP/HTTP server on 127.0.0.1 that keeps every record it is sent."""

    def __init__(self) -> None:
        self.received = Received()
        self._lock = threading.Lock()
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _accept(self, path: str, body: bytes, headers: dict[str, str]) -> bytes | None:
        with self._lock:
            self.received.requests += 1
            self.received.headers.append({k.lower(): v for k, v in headers.items()})
            if path.endswith("/v1/logs"):
                req = ExportLogsServiceRequest.FromString(body)
                for rl in req.resource_logs:
                    resource = attrs(rl.resource.attributes)
                    for sl in rl.scope_logs:
                        for r in sl.log_records:
                            self.received.logs.append(
                                {
                                    "resource": resource,
                                    "scope": sl.scope.name,
                                    "event_name": r.event_name,
                                    "body": any_value(r.body),
                                    "severity_number": r.severity_number,
                                    "severity_text": r.severity_text,
                                    "time_unix_nano": r.time_unix_nano,
                                    "observed_time_unix_nano": r.observed_time_unix_nano,
                                    "trace_id": r.trace_id.hex(),
                                    "span_id": r.span_id.hex(),
                                    "attributes": attrs(r.attributes),
                                }
                            )
                return bytes(ExportLogsServiceResponse().SerializeToString())
            if path.endswith("/v1/traces"):
                treq = ExportTraceServiceRequest.FromString(body)
                for rs in treq.resource_spans:
                    resource = attrs(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            self.received.spans.append(
                                {
                                    "resource": resource,
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent_span_id": s.parent_span_id.hex(),
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "status_code": s.status.code,
                                    "status_message": s.status.message,
                                    "attributes": attrs(s.attributes),
                                    "events": [
                                        {
                                            "name": e.name,
                                            "time": e.time_unix_nano,
                                            "attributes": attrs(e.attributes),
                                        }
                                        for e in s.events
                                    ],
                                }
                            )
                return bytes(ExportTraceServiceResponse().SerializeToString())
            return None

    def wait_for(self, n_logs: int, n_spans: int = 0, timeout_s: float = 20.0) -> Received:
        """Wait (bounded) until at least ``n_logs`` records and ``n_spans`` spans arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received.logs) >= n_logs and len(self.received.spans) >= n_spans:
                    break
            time.sleep(0.05)
        return self.received

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
