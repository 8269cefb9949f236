"""The fence around OpenTelemetry's private names: every one we touch is used here only.

The SDK and its exporters keep internals that no public seam offers; each use
below is feature-gated (``getattr``/``hasattr`` on the object in hand, never a
version number), and when the internal is not there the caller gets ``None`` (or
the public behaviour) and does without: a newer SDK may cost a feature, never the
job. What is replaced is put back (:func:`replace_function`). The versions this
was tested with are the ones ``pyproject.toml`` allows (``opentelemetry-sdk``
1.40-1.45); ``tools/otel-compat.sh`` runs the fence's tests against the oldest.

What is touched, and why:

* the exporters' transports (``_client``, ``_submit``, ``_export``, ``_endpoint``):
  which failure an export met (:func:`watch_failures`);
* ``ProxyLoggerProvider`` and ``_ProxyMeterProvider`` in the API's ``_internal``
  modules: telling an application's provider from the placeholder
  (:func:`is_application_provider`);
* a metric exporter's ``_preferred_temporality``/``_preferred_aggregation``
  (:func:`metric_preferences`);
* an SDK tracer's ``id_generator`` (:func:`wrap_id_generator`);
* a gRPC exporter's ``_translate_data`` and an HTTP exporter module's ``encode_*``
  (:func:`passing_subclass`, :func:`replace_function`): the fast path's seams;
* the context key that suppresses instrumentation, where the public helper is not
  installed (:func:`suppressed_instrumentation`).

Example::

    >>> arm = watch_failures(exporter, lambda status: print(status))  # doctest: +SKIP
    >>> arm()  # before each export: "UNIMPLEMENTED" or "404" is reported on failure
"""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_log = logging.getLogger("torchelastic_otel")

CONNECTION_FAILED = "connection failed"
"""What :func:`watch_failures` reports for an HTTP request that got no response."""

# Marks a wrapper of ours, so that arming twice does not wrap twice.
_OURS = "__torchelastic_otel__"


def _is_otlp_exporter(exporter: Any) -> bool:
    """One of the SDK's OTLP exporters (or a subclass): their internals are known here."""
    return any(
        cls.__module__.startswith("opentelemetry.exporter.otlp.") for cls in type(exporter).__mro__
    )


def exporter_endpoint(exporter: Any) -> str:
    """Where an SDK OTLP exporter sends (its private ``_endpoint``), or ``''``."""
    endpoint = getattr(exporter, "_endpoint", "") if _is_otlp_exporter(exporter) else ""
    return endpoint if isinstance(endpoint, str) else ""


def watch_failures(exporter: Any, on_failure: Callable[[str], None]) -> Callable[[], None] | None:
    """Report the status of each failed export of an SDK OTLP exporter.

    The exporters turn every failure into ``FAILURE`` and a log line; which
    failure it was (``UNIMPLEMENTED``: this endpoint has no such service) is only
    in their private transport objects:

    * gRPC: the stub ``exporter._client``, whose ``Export`` raises ``RpcError``;
      the exporter builds a new stub after ``UNAVAILABLE``, hence the re-arming.
    * HTTP (1.45 on): ``exporter._client._submit(data, timeout)`` (else
      ``exporter._client.export(data)``) returns a result with a ``status_code``;
      before 1.45: ``exporter._export(data, timeout)`` returns the
      ``requests.Response``.

    Args:
        exporter: the exporter; anything but an SDK OTLP exporter gives ``None``.
        on_failure: called on the exporting thread, before the exporter logs the
            failure or retries, with the gRPC status name (``UNAVAILABLE`` for a
            collector that is down), the HTTP status code as text, or
            :data:`CONNECTION_FAILED`.

    Returns:
        A function to call before each export (it wraps the current transport
        object once), or ``None`` when no known seam is there.
    """
    if not _is_otlp_exporter(exporter):
        return None
    client = getattr(exporter, "_client", None)
    if client is not None and callable(getattr(client, "Export", None)):
        return lambda: _arm_grpc(exporter, on_failure)
    if client is not None and callable(getattr(client, "export", None)):
        return lambda: _arm_http_client(exporter, on_failure)
    if callable(getattr(exporter, "_export", None)) and client is None:
        return lambda: _arm_http_export(exporter, on_failure)
    return None


def _arm_grpc(exporter: Any, on_failure: Callable[[str], None]) -> None:
    stub = getattr(exporter, "_client", None)
    if stub is None or getattr(stub, _OURS, False):
        return
    exporter._client = _WatchedStub(stub, on_failure)


class _WatchedStub:
    """A gRPC stub whose ``Export`` reports the status code of an ``RpcError``."""

    def __init__(self, stub: Any, on_failure: Callable[[str], None]) -> None:
        setattr(self, _OURS, True)
        self._stub = stub
        self._on_failure = on_failure

    def Export(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 -- the stub's name
        """The stub's ``Export``; an error's status is reported, then re-raised."""
        try:
            return self._stub.Export(*args, **kwargs)
        except Exception as e:
            code = getattr(e, "code", None)
            status = code() if callable(code) else None
            self._on_failure(str(getattr(status, "name", status)))
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)


def _arm_http_client(exporter: Any, on_failure: Callable[[str], None]) -> None:
    client = exporter._client
    # Its _submit returns each response before export() logs the failure: watched
    # there, our own line can replace the exporter's. Else export()'s result.
    name = "_submit" if callable(getattr(client, "_submit", None)) else "export"
    call = getattr(client, name)
    if getattr(call, _OURS, False):
        return

    def watched(*args: Any, **kwargs: Any) -> Any:
        result = call(*args, **kwargs)
        status = getattr(result, "status_code", None)
        if status is None and getattr(result, "error", None) is not None:
            on_failure(CONNECTION_FAILED)
        elif not getattr(result, "success", True) or (status is not None and status >= 400):
            on_failure(str(status))
        return result

    setattr(watched, _OURS, True)
    setattr(client, name, watched)


def _arm_http_export(exporter: Any, on_failure: Callable[[str], None]) -> None:
    export = exporter._export
    if getattr(export, _OURS, False):
        return

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            response = export(*args, **kwargs)
        except Exception:
            on_failure(CONNECTION_FAILED)
            raise
        if not getattr(response, "ok", True):
            on_failure(str(getattr(response, "status_code", None)))
        return response

    setattr(watched, _OURS, True)
    exporter._export = watched


# --- the API's placeholder providers ---------------------------------------------------

# Where the API keeps placeholders it does not export (as of 1.45).
_INTERNAL_PLACEHOLDERS = (
    ("opentelemetry._logs._internal", "ProxyLoggerProvider"),
    ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
)


def is_application_provider(provider: Any) -> bool:
    """Whether ``provider`` is one an application installed, not the API's placeholder.

    Public placeholders are checked by class; the proxies the API keeps in its
    ``_internal`` modules by class where they are, and by name where they moved (a
    class named like them, from ``opentelemetry`` itself).
    """
    import importlib

    from opentelemetry import _logs, metrics, trace

    placeholders: list[type] = [
        trace.ProxyTracerProvider,
        trace.NoOpTracerProvider,
        _logs.NoOpLoggerProvider,
        metrics.NoOpMeterProvider,
    ]
    for module_name, name in _INTERNAL_PLACEHOLDERS:
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(cls, type):
            placeholders.append(cls)
    if isinstance(provider, tuple(placeholders)):
        return False
    cls = type(provider)
    names = {name for _, name in _INTERNAL_PLACEHOLDERS}
    return not (cls.__module__.startswith("opentelemetry.") and cls.__name__ in names)


# --- metric exporters ----------------------------------------------------------------------


def metric_preferences(exporter: Any) -> tuple[dict[Any, Any] | None, dict[Any, Any] | None]:
    """A metric exporter's preferred temporality and aggregation, by instrument type.

    A reader that collects for an exporter must use them, and the SDK's exporters
    keep them private (``_preferred_temporality``, ``_preferred_aggregation``).
    ``None`` where they are not there: the reader's defaults (cumulative).
    """
    temporality = getattr(exporter, "_preferred_temporality", None)
    aggregation = getattr(exporter, "_preferred_aggregation", None)
    if temporality is None:
        _log.debug("torchelastic-otel: %s has no temporality preference", type(exporter).__name__)
    return (
        temporality if isinstance(temporality, dict) else None,
        aggregation if isinstance(aggregation, dict) else None,
    )


# --- tracers ---------------------------------------------------------------------------------


def wrap_id_generator(tracer: Any, wrap: Callable[[Any], Any]) -> Any:
    """Replace an SDK tracer's ``id_generator`` with ``wrap(it)``; that, or ``None``.

    The SDK's tracer reads ``self.id_generator`` for every span it starts, and
    offers no other way to choose one tracer's ids; only this tracer object (ours,
    from ``get_tracer``) is changed, never the provider's generator.
    """
    inner = getattr(tracer, "id_generator", None)
    if inner is None or not callable(getattr(inner, "generate_span_id", None)):
        return None
    ids = wrap(inner)
    tracer.id_generator = ids
    return ids


def passing_subclass(base: type[Any], passes: Callable[[Any], Any]) -> type[Any]:
    """A subclass of a gRPC OTLP exporter whose ``_translate_data`` lets ``passes`` decide.

    ``passes(data)`` returns the request to send as it is, or ``None`` for the
    exporter's own translation. The override is local to our subclass.
    """

    def _translate_data(self: Any, data: Any) -> Any:
        request = passes(data)
        return base._translate_data(self, data) if request is None else request

    return type(f"Prebuilt{base.__name__}", (base,), {"_translate_data": _translate_data})


# --- module functions we replace while we need them -------------------------------------------

_patch_lock = threading.Lock()
# (module, name) -> (the original, how many users hold the replacement)
_patches: dict[tuple[str, str], tuple[Any, int]] = {}


def replace_function(
    module_name: str, name: str, make: Callable[[Any], Any]
) -> Callable[[], None] | None:
    """Set ``module.name`` to ``make(original)`` until every user released it.

    The OTLP/HTTP exporters look their ``encode_*`` function up in their module at
    export time: that global is the only seam there. Several pipelines may hold the
    replacement at once (``configure()`` replaces one while the old one flushes);
    the last release puts the original back.

    Returns:
        The release function (idempotent), or ``None`` when there is no such function.
    """
    import importlib

    key = (module_name, name)
    with _patch_lock:
        module = importlib.import_module(module_name)
        current = getattr(module, name, None)
        if current is None:
            return None
        if key in _patches:
            original, users = _patches[key]
            _patches[key] = (original, users + 1)
        else:
            _patches[key] = (current, 1)
            setattr(module, name, make(current))
    released = False

    def release() -> None:
        nonlocal released
        with _patch_lock:
            if released or key not in _patches:
                return
            released = True
            original, users = _patches[key]
            if users > 1:
                _patches[key] = (original, users - 1)
            else:
                del _patches[key]
                setattr(importlib.import_module(module_name), name, original)

    return release


# --- our own exports are not the application's to trace ----------------------------------------


def suppressed_instrumentation() -> Any:
    """A context in which instrumentations do not trace (our exports run in it).

    As the SDK's own batch processors do: an instrumented HTTP or gRPC client in the
    agent would otherwise make spans of our export requests, and export those too.
    """
    try:
        from opentelemetry.instrumentation.utils import suppress_instrumentation
    except ImportError:
        return _suppressed_by_key()
    return suppress_instrumentation()


@contextmanager
def _suppressed_by_key() -> Iterator[None]:
    from opentelemetry import context

    key = getattr(context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")
    token = context.attach(context.set_value(key, True))
    try:
        yield
    finally:
        context.detach(token)
