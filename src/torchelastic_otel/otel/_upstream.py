"""The fence around OpenTelemetry's private names: every one we touch is used here only.

The SDK and its exporters keep internals that no public seam offers; each use
below is feature-gated (``getattr``/``hasattr`` on the object in hand, never a
version number), and when the internal is not there the caller gets ``None`` and
does without: a newer SDK may cost a feature, never the job.

Example::

    >>> arm = watch_failures(exporter, lambda status: print(status))  # doctest: +SKIP
    >>> arm()  # before each export: "UNIMPLEMENTED" or "404" is reported on failure
"""

import logging
from collections.abc import Callable
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
