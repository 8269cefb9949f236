"""The OTLP exporters this package creates, from its settings.

The exporters read everything the settings leave unset from the ``OTEL_*``
variables themselves (endpoints, certificates, timeouts); what is set here is
what this package decides or validates: protocol, headers (parsed once, so a
malformed entry gives one warning), compression (gzip by default), and a
requests session that really trusts ``OTEL_EXPORTER_OTLP_CERTIFICATE`` over
HTTP.
"""

from dataclasses import dataclass
from typing import Any

from torchelastic_otel.otel.settings import Settings


@dataclass(frozen=True)
class Signal:
    """What differs between the signals' exporters."""

    name: str  # "logs", "traces" or "metrics": the OTLP/HTTP path and the variables' infix
    grpc_module: str
    grpc_class: str
    http_module: str
    http_class: str

    @property
    def path(self) -> str:
        """The OTLP/HTTP path appended to a base endpoint."""
        return f"/v1/{self.name}"


LOGS = Signal(
    "logs",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
    "OTLPLogExporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "OTLPLogExporter",
)
TRACES = Signal(
    "traces",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "OTLPSpanExporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "OTLPSpanExporter",
)
METRICS = Signal(
    "metrics",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "OTLPMetricExporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "OTLPMetricExporter",
)


def protocol_of(s: Settings, signal: Signal) -> str:
    """``grpc`` or ``http/protobuf`` for ``signal``."""
    return str(getattr(s, f"{signal.name}_protocol"))


def exporter_class(s: Settings, signal: Signal) -> type[Any]:
    """The SDK's OTLP exporter class for ``signal`` under the configured protocol."""
    import importlib

    grpc = protocol_of(s, signal) == "grpc"
    module = importlib.import_module(signal.grpc_module if grpc else signal.http_module)
    cls: type[Any] = getattr(module, signal.grpc_class if grpc else signal.http_class)
    return cls


def import_modules(s: Settings, signals: tuple[Signal, ...] = (LOGS, TRACES, METRICS)) -> None:
    """Import the exporter modules the settings will use (their loggers exist then)."""
    for signal in signals:
        exporter_class(s, signal)


def exporter_kwargs(s: Settings, signal: Signal) -> dict[str, Any]:
    """The constructor arguments of ``signal``'s exporter (unset ones: the env decides)."""
    protocol = protocol_of(s, signal)
    headers = getattr(s, f"{signal.name}_headers")
    compression = getattr(s, f"{signal.name}_compression")
    kwargs: dict[str, Any] = {"compression": _compression(compression, protocol)}
    if headers is not None:
        kwargs["headers"] = dict(headers)
    if s.timeout_s is not None:
        kwargs["timeout"] = s.timeout_s
    if s.endpoint is not None:
        grpc = protocol == "grpc"
        kwargs["endpoint"] = s.endpoint if grpc else s.endpoint.rstrip("/") + signal.path
    if s.insecure is not None and protocol == "grpc":
        kwargs["insecure"] = s.insecure
    if protocol != "grpc":
        ca_file = getattr(s, f"{signal.name}_certificate")
        if ca_file:
            kwargs["session"] = _session_trusting(ca_file)
    return kwargs


def create(s: Settings, signal: Signal, cls: type[Any] | None = None) -> Any:
    """An OTLP exporter for ``signal`` (of class ``cls``: a subclass of the SDK's)."""
    return (cls or exporter_class(s, signal))(**exporter_kwargs(s, signal))


def _compression(name: str, protocol: str) -> Any:
    if name == "none":
        return None
    if protocol == "grpc":
        from grpc import Compression as GrpcCompression

        return GrpcCompression.Gzip if name == "gzip" else GrpcCompression.Deflate
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

    return HttpCompression.Gzip if name == "gzip" else HttpCompression.Deflate


def _session_trusting(ca_file: str) -> Any:
    """A requests session that keeps ``verify=ca_file`` even when REQUESTS_CA_BUNDLE is set.

    requests lets the environment's CA bundle override a session's ``verify``
    (psf/requests#3829), so with ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` set, as
    on many machines, the HTTP exporter would ignore OTEL_EXPORTER_OTLP_CERTIFICATE
    and reject a private CA. Proxies from the environment still apply.
    """
    import requests

    class _Session(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = ca_file
            return settings

    session = _Session()
    session.verify = ca_file
    return session
