"""Settings of the ``otel`` destination: environment variables, then ``configure()``.

This module is the only reader of the package's environment variables (declared
in :mod:`.environment_variables`). A malformed value never stops the job: it gives
one warning per process (naming the variable, never a header's value) and the
default is used instead. Booleans of ours take ``1/true/yes/on`` and
``0/false/no/off`` (any case); ``OTEL_*`` booleans follow the specification.
"""

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from torchelastic_otel.otel import environment_variables as ev

PROTOCOLS = ("grpc", "http/protobuf")

_log = logging.getLogger("torchelastic_otel")

# W3C-baggage-like `name=value` pairs as the OTLP exporter spec describes them.
_HEADER = re.compile(r"^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Settings:
    """Everything the export pipeline needs to know; see ``configure()`` for meanings."""

    disabled: bool = False
    logs_protocol: str = "grpc"
    traces_protocol: str = "grpc"
    metrics_protocol: str = "grpc"
    endpoint: str | None = None
    logs_headers: Mapping[str, str] | None = None
    traces_headers: Mapping[str, str] | None = None
    metrics_headers: Mapping[str, str] | None = None
    insecure: bool | None = None
    timeout_s: float | None = None
    service_name: str | None = None
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    max_queue_size: int = 65536
    schedule_delay_ms: int = 1000
    logs_batch_size: int = 512
    spans_batch_size: int = 512
    shutdown_timeout_ms: int = 1000
    shutdown_max_ms: int = 20_000
    fast_path: bool = True
    chatter_summary_s: float = 300.0
    warning_interval_s: float = 60.0
    use_global_providers: bool = True
    # gzip, deflate or none, per signal (OTEL_EXPORTER_OTLP_[<SIGNAL>_]COMPRESSION).
    logs_compression: str = "gzip"
    traces_compression: str = "gzip"
    metrics_compression: str = "gzip"
    # The CA bundle for OTLP/HTTP (the gRPC exporter reads its own).
    logs_certificate: str | None = None
    traces_certificate: str | None = None
    metrics_certificate: str | None = None
    logs_exporter: str = "otlp"
    traces_exporter: str = "otlp"
    metrics_exporters: tuple[str, ...] = ("otlp",)
    metric_export_interval_ms: int = 60_000
    prometheus_host: str = "localhost"
    prometheus_port: int = 9464
    trace_shard_nodes: int = 1000
    stall_timeout_s: float = 300.0
    rdzv_events: bool = False  # under torchrun: export the dynamic rendezvous' events
    torch_metrics: bool = True  # under torchrun: bridge torch's own elastic metrics

    def with_overrides(self, **overrides: Any) -> "Settings":
        """A copy with the non-``None`` overrides applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment, warning once for each bad value.

    This is the only place the package reads its settings from the environment
    (the exporters still read what is left unset here: endpoints, timeouts, client
    keys). A bad value warns once per process, however often the settings are
    read, and its default is used.
    """
    env = os.environ if environ is None else environ
    default = Settings()
    base_protocol = _protocol(env, ev.OTEL_EXPORTER_OTLP_PROTOCOL, default.logs_protocol)
    base_headers = _headers(env, ev.OTEL_EXPORTER_OTLP_HEADERS)
    base_compression = _compression(env, ev.OTEL_EXPORTER_OTLP_COMPRESSION, _DEFAULT_COMPRESSION)
    base_certificate = env.get(ev.OTEL_EXPORTER_OTLP_CERTIFICATE, "").strip() or None
    _sampler(env)
    return Settings(
        endpoint=_endpoint_with_scheme(env),
        logs_compression=_compression(
            env, ev.OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, base_compression
        ),
        traces_compression=_compression(
            env, ev.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, base_compression
        ),
        metrics_compression=_compression(
            env, ev.OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, base_compression
        ),
        logs_certificate=env.get(ev.OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE, "").strip()
        or base_certificate,
        traces_certificate=env.get(ev.OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, "").strip()
        or base_certificate,
        metrics_certificate=env.get(ev.OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE, "").strip()
        or base_certificate,
        metrics_protocol=_protocol(env, ev.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, base_protocol),
        metrics_headers=_first(_headers(env, ev.OTEL_EXPORTER_OTLP_METRICS_HEADERS), base_headers),
        metrics_exporters=_exporter_names(env, ev.OTEL_METRICS_EXPORTER, default.metrics_exporters),
        logs_exporter=_one_exporter(env, ev.OTEL_LOGS_EXPORTER, default.logs_exporter),
        traces_exporter=_one_exporter(env, ev.OTEL_TRACES_EXPORTER, default.traces_exporter),
        metric_export_interval_ms=_positive_int(
            env, ev.OTEL_METRIC_EXPORT_INTERVAL, default.metric_export_interval_ms
        ),
        prometheus_host=env.get(ev.OTEL_EXPORTER_PROMETHEUS_HOST, "").strip()
        or default.prometheus_host,
        prometheus_port=_port(env, ev.OTEL_EXPORTER_PROMETHEUS_PORT, default.prometheus_port),
        disabled=_spec_boolean(env, ev.OTEL_SDK_DISABLED),
        logs_protocol=_protocol(env, ev.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL, base_protocol),
        traces_protocol=_protocol(env, ev.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, base_protocol),
        logs_headers=_first(_headers(env, ev.OTEL_EXPORTER_OTLP_LOGS_HEADERS), base_headers),
        traces_headers=_first(_headers(env, ev.OTEL_EXPORTER_OTLP_TRACES_HEADERS), base_headers),
        max_queue_size=_positive_int(env, ev.OTEL_BLRP_MAX_QUEUE_SIZE, default.max_queue_size),
        schedule_delay_ms=_positive_int(
            env, ev.OTEL_BLRP_SCHEDULE_DELAY, default.schedule_delay_ms
        ),
        logs_batch_size=_positive_int(
            env, ev.OTEL_BLRP_MAX_EXPORT_BATCH_SIZE, default.logs_batch_size
        ),
        spans_batch_size=_positive_int(
            env, ev.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, default.spans_batch_size
        ),
        shutdown_timeout_ms=_positive_int(
            env, ev.TORCHELASTIC_OTEL_SHUTDOWN_TIMEOUT_MS, default.shutdown_timeout_ms, zero=True
        ),
        shutdown_max_ms=_positive_int(
            env, ev.TORCHELASTIC_OTEL_SHUTDOWN_MAX_MS, default.shutdown_max_ms, zero=True
        ),
        fast_path=_boolean(env, ev.TORCHELASTIC_OTEL_FAST_PATH, default.fast_path),
        chatter_summary_s=float(
            _positive_int(
                env,
                ev.TORCHELASTIC_OTEL_CHATTER_SUMMARY_S,
                int(default.chatter_summary_s),
                zero=True,
            )
        ),
        warning_interval_s=float(
            _positive_int(
                env,
                ev.TORCHELASTIC_OTEL_DROP_WARNING_INTERVAL_S,
                int(default.warning_interval_s),
                zero=True,
            )
        ),
        trace_shard_nodes=_positive_int(
            env, ev.TORCHELASTIC_OTEL_TRACE_SHARD_NODES, default.trace_shard_nodes, zero=True
        ),
        stall_timeout_s=_seconds(
            env, ev.TORCHELASTIC_OTEL_STALL_TIMEOUT_S, default.stall_timeout_s
        ),
        rdzv_events=_boolean(env, ev.TORCHELASTIC_OTEL_RDZV_EVENTS, default.rdzv_events),
        torch_metrics=_boolean(env, ev.TORCHELASTIC_OTEL_TORCH_METRICS, default.torch_metrics),
    )


_warned: set[tuple[str, str]] = set()


def _warn(name: str, value: object, message: str, *args: object) -> None:
    """Log ``message`` once per process for this variable and value."""
    key = (name, repr(value))
    if key in _warned:
        return
    _warned.add(key)
    _log.warning(message, *args)


_DEFAULT_COMPRESSION = "gzip"
_COMPRESSIONS = ("gzip", "deflate", "none")


def _compression(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in _COMPRESSIONS:
        return text
    _warn(
        name,
        value,
        "ignoring %s=%r: not one of %s; using %s",
        name,
        value,
        ", ".join(_COMPRESSIONS),
        default,
    )
    return default


# What the SDK's TracerProvider would do anyway: keep every span.
_KEEP_ALL_SAMPLERS = ("always_on", "parentbased_always_on")


def _sampler(env: Mapping[str, str]) -> None:
    """Say once that ``OTEL_TRACES_SAMPLER`` does not apply to our spans."""
    value = env.get(ev.OTEL_TRACES_SAMPLER, "").strip()
    if value and value.lower() not in _KEEP_ALL_SAMPLERS:
        _warn(
            ev.OTEL_TRACES_SAMPLER,
            value,
            "%s=%r is not applied to torchelastic's spans: every node keeps all of them "
            "(a node's sampler would keep its part of a cycle and drop its neighbour's); "
            "sample whole traces in the collector (docs/operations.md#sampling)",
            ev.OTEL_TRACES_SAMPLER,
            value,
        )


def _first(*values: dict[str, str] | None) -> dict[str, str] | None:
    return next((v for v in values if v is not None), None)


def check_protocol(value: str, source: str) -> str:
    """``value`` normalised, or ``ValueError`` naming the supported protocols."""
    normalised = value.strip().lower()
    if normalised not in PROTOCOLS:
        raise ValueError(f"{source}={value!r} is not supported; use one of {', '.join(PROTOCOLS)}")
    return normalised


def _protocol(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        return check_protocol(value, name)
    except ValueError as e:
        _warn(name, value, "%s; using %s", e, default)
        return default


def parse_headers(text: str, source: str) -> tuple[dict[str, str], list[int]]:
    """Parse ``name=value,...`` (values may be URL-encoded).

    Returns the well-formed headers and the 1-based positions of malformed entries,
    so that a warning can name where the problem is without showing a value
    (headers carry credentials).
    """
    headers: dict[str, str] = {}
    bad: list[int] = []
    for index, item in enumerate(text.split(",")):
        if not item.strip():
            continue
        match = _HEADER.match(item)
        if match is None:
            bad.append(index + 1)
            continue
        headers[unquote(match.group(1)).lower()] = unquote(match.group(2))
    return headers, bad


def _headers(env: Mapping[str, str], name: str) -> dict[str, str] | None:
    value = env.get(name)
    if not value:
        return None
    headers, bad = parse_headers(value, name)
    if bad:
        one = len(bad) == 1
        _warn(
            name,
            tuple(bad),
            "%s: %s %s not of the form name=value and %s ignored "
            "(values are not shown: headers may hold credentials)",
            name,
            ("entry " if one else "entries ") + ", ".join(map(str, bad)),
            "is" if one else "are",
            "is" if one else "are",
        )
    return headers


_SCHEMES = ("http://", "https://")


def _endpoint_with_scheme(env: Mapping[str, str]) -> str | None:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` when it lacks a scheme, with ``http://`` and a hint.

    Without a scheme the gRPC exporter assumes TLS, and a plain collector answers
    with TLS handshake errors that do not say why. Set with a scheme (or unset):
    ``None``, and the exporters read it themselves.
    """
    value = env.get(ev.OTEL_EXPORTER_OTLP_ENDPOINT, "").strip()
    if not value or value.lower().startswith(_SCHEMES):
        for signal in ("LOGS", "TRACES", "METRICS"):
            name = f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
            per_signal = env.get(name, "").strip()
            if per_signal and not per_signal.lower().startswith(_SCHEMES):
                _warn(
                    name,
                    per_signal,
                    "%s=%r has no scheme: write http://%s (or https:// for TLS)",
                    name,
                    per_signal,
                    per_signal,
                )
        return None
    _warn(
        ev.OTEL_EXPORTER_OTLP_ENDPOINT,
        value,
        "%s=%r has no scheme: using http://%s (write https:// for TLS)",
        ev.OTEL_EXPORTER_OTLP_ENDPOINT,
        value,
        value,
    )
    return "http://" + value


_METRICS_EXPORTERS = ("otlp", "prometheus", "console", "none")


def _exporter_names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in _METRICS_EXPORTERS]
    if unknown:
        _warn(
            name,
            value,
            "ignoring %s=%r: %s not one of %s",
            name,
            value,
            ", ".join(unknown),
            ", ".join(_METRICS_EXPORTERS),
        )
    known = tuple(n for n in names if n in _METRICS_EXPORTERS)
    return ("none",) if "none" in known or not known else known


_EXPORTERS = ("otlp", "console", "none")


def _one_exporter(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    # The spec allows a list; for logs and spans, the first one we know is used.
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    known = [n for n in names if n in _EXPORTERS]
    if len(known) != len(names) or len(known) > 1:
        _warn(
            name,
            value,
            "%s=%r: using %s (one of %s)",
            name,
            value,
            known[0] if known else default,
            ", ".join(_EXPORTERS),
        )
    return known[0] if known else default


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    port = _positive_int(env, name, default)
    if port > 65535:
        _warn(
            name,
            env.get(name),
            "ignoring %s=%r: not a port; using %d",
            name,
            env.get(name),
            default,
        )
        return default
    return port


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    _warn(
        name,
        value,
        "ignoring %s=%r: not one of %s; using %s",
        name,
        value,
        "/".join(_TRUE + _FALSE),
        str(default).lower(),
    )
    return default


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A non-negative number of seconds (fractions allowed)."""
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = float(value.strip())
    except ValueError:
        number = -1.0
    if 0 <= number < float("inf"):
        return number
    _warn(
        name, value, "ignoring %s=%r: not a number of seconds >= 0; using %g", name, value, default
    )
    return default


def _spec_boolean(env: Mapping[str, str], name: str) -> bool:
    """An ``OTEL_*`` boolean as the specification (and the SDK) reads it.

    Only ``true`` (any case) is true. Our own variables also take 1/yes/on, but
    an ``OTEL_*`` variable is read by the application's SDK too, and both must
    agree on what it means: any other value warns once and reads as false.
    """
    text = env.get(name, "").strip().lower()
    if text not in ("", "true", "false"):
        _warn(
            name,
            text,
            "%s=%r read as false: only 'true' turns it on (the OpenTelemetry "
            "specification's rule for its boolean variables, which the SDK follows)",
            name,
            env.get(name),
        )
    return text == "true"


def _positive_int(env: Mapping[str, str], name: str, default: int, zero: bool = False) -> int:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number > 0 or (zero and number == 0):
        return number
    _warn(
        name,
        value,
        "ignoring %s=%r: not a %s integer; using %d",
        name,
        value,
        "non-negative" if zero else "positive",
        default,
    )
    return default
