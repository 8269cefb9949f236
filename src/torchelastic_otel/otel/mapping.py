"""Events → OpenTelemetry attributes, severity, names and ids (docs/mapping.md).

Pure functions with no OpenTelemetry import, so they are cheap to test and to reuse
(the timeline command reads the same keys back).

Example::

    >>> from torchelastic_otel.events import Event, EventSource
    >>> m = map_event(Event("torchelastic.worker.status.START", EventSource.WORKER,
    ...                     metadata={"run_id": "j", "group_rank": 1, "state": "START"}))
    >>> m.attributes["run_id"], m.attributes["rank"], m.attributes["node_state"]
    ('j', 1, 'START')
"""

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from torchelastic_otel.events import Event, RdzvEvent
from torchelastic_otel.semconv import (
    EVENT_KIND,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    EXIT_CODE,
    HOST_NAME,
    KIND_AGENT,
    KIND_RENDEZVOUS,
    LOCAL_ID,
    MASTER_ENDPOINT,
    MESSAGE,
    METADATA,
    NAME,
    NODE_STATE,
    PREFIX,
    PROCESS_PID,
    RANK,
    RENDEZVOUS_FAILURE,
    RUN_ID,
    SEVERITY_ERROR,
    SEVERITY_INFO,
    SEVERITY_WARN,
    SIGNAL,
    SOURCE,
    STATE_FAILED,
    TIMESTAMP,
    UNKNOWN_RANK,
    UNKNOWN_RUN_ID,
    UNKNOWN_STATE,
    WARN_STATES,
    WORKER_FAILURE,
    describe_exit,
)
from torchelastic_otel.torch_messages import is_shutdown

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

AttrValue = str | bool | int | float | list[str] | list[bool] | list[int] | list[float]


@dataclass
class MappedEvent:
    """One event, ready to become a log record (and to drive the span state machine)."""

    kind: str  # KIND_AGENT or KIND_RENDEZVOUS
    event_name: str
    body: str
    severity: int
    attributes: dict[str, AttrValue]
    timestamp_ns: int | None  # the event's own time, if it has one
    exception: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """The run id attribute."""
        return str(self.attributes[RUN_ID])

    @property
    def rank(self) -> int:
        """The node rank attribute (``-1`` when unknown)."""
        value = self.attributes[RANK]
        return value if isinstance(value, int) else UNKNOWN_RANK

    @property
    def node_state(self) -> str:
        """The ``node_state`` attribute."""
        return str(self.attributes[NODE_STATE])


def to_event(item: Any) -> Event | RdzvEvent:
    """The event behind a record's message: an event object, or torch's JSON text.

    Raises:
        ValueError: JSON that is neither event kind (names the bad field).
        TypeError: anything else.
    """
    if isinstance(item, (Event, RdzvEvent)):
        return item
    if isinstance(item, str):
        # Parsed once, by the kind its keys say (only a rendezvous event has a
        # node_state); the other kind is tried if that fails.
        first, second = (
            (RdzvEvent.deserialize, Event.deserialize)
            if '"node_state"' in item
            else (Event.deserialize, RdzvEvent.deserialize)
        )
        try:
            return first(item)
        except ValueError as error:
            try:
                return second(item)
            except ValueError:
                raise error from None
    # torch's own dataclasses (the handler registered inside torch's module).
    cls_name = type(item).__name__
    if cls_name in ("Event", "RdzvEvent") and hasattr(item, "serialize"):
        return to_event(item.serialize())
    raise TypeError(f"expected an Event, RdzvEvent or their JSON, got {cls_name}")


def map_event(event: Event | RdzvEvent) -> MappedEvent:
    """Map an event to its log record fields; raises ``TypeError`` for other objects."""
    if isinstance(event, RdzvEvent):
        return _valid_utf8(_map_rdzv(event))
    if isinstance(event, Event):
        return _valid_utf8(_map_agent(event))
    raise TypeError(f"expected an Event or RdzvEvent, got {type(event).__name__}")


def _valid_utf8(m: MappedEvent) -> MappedEvent:
    """Escape lone surrogates, which Python strings allow and OTLP (UTF-8) does not."""
    values = [v for value in m.attributes.values() for v in _strings(value)]
    # Each text alone: joined, a lone high surrogate and a lone low one would pair up.
    texts = [m.event_name, m.body, *m.attributes, *values]
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        m.event_name, m.body = _utf8(m.event_name), _utf8(m.body)
        m.attributes = {_utf8(k): _utf8_value(v) for k, v in m.attributes.items()}
        m.exception = {k: _utf8(v) for k, v in m.exception.items()}
    return m


def _strings(value: AttrValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _utf8_value(value: AttrValue) -> AttrValue:
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [_utf8(str(v)) for v in value]
    return value


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _map_rdzv(event: RdzvEvent) -> MappedEvent:
    state = _enum_value(event.node_state) or UNKNOWN_STATE
    attrs: dict[str, AttrValue] = {
        RUN_ID: _run_id(event.run_id),
        RANK: _int_or(event.rank, UNKNOWN_RANK),
        NODE_STATE: state,
        EVENT_KIND: KIND_RENDEZVOUS,
    }
    _put(attrs, HOST_NAME, event.hostname)
    _put(attrs, PROCESS_PID, event.pid)
    _put(attrs, NAME, event.name)
    _put(attrs, MESSAGE, event.message)
    _put(attrs, MASTER_ENDPOINT, event.master_endpoint)
    _put(attrs, LOCAL_ID, event.local_id)
    exc = (
        exception_from_text(str(event.error_trace), RENDEZVOUS_FAILURE) if event.error_trace else {}
    )
    if state == STATE_FAILED and not exc:
        exc = {EXCEPTION_TYPE: RENDEZVOUS_FAILURE}
        _put_str(exc, EXCEPTION_MESSAGE, event.message)
    attrs.update(exc)
    severity = SEVERITY_ERROR if state == STATE_FAILED else SEVERITY_INFO
    if severity == SEVERITY_ERROR and is_shutdown(str(event.name)):
        severity = SEVERITY_WARN  # torch's own level for it: the job is over by then
    return MappedEvent(
        kind=KIND_RENDEZVOUS,
        event_name=_text(event.name),
        body=_text(event.message),
        severity=severity,
        attributes=attrs,
        timestamp_ns=None,
        exception=exc,
    )


def _map_agent(event: Event) -> MappedEvent:
    md = event.metadata if isinstance(event.metadata, dict) else {}
    state = md.get("state")
    state = state if isinstance(state, str) and state else UNKNOWN_STATE
    rank = _first_int(md.get("group_rank"), md.get("global_rank"))
    attrs: dict[str, AttrValue] = {
        RUN_ID: _run_id(md.get("run_id")),
        RANK: rank,
        NODE_STATE: state,
        EVENT_KIND: KIND_AGENT,
    }
    _put(attrs, NAME, event.name)
    _put(attrs, SOURCE, _enum_value(event.source))
    ts = event.timestamp if isinstance(event.timestamp, (int, float)) else 0
    if ts and not isinstance(ts, bool):
        _put(attrs, TIMESTAMP, ts)
    for raw_key, value in md.items():
        key = str(raw_key)
        if key in ("run_id", "state"):
            continue
        if key == "hostname":
            _put(attrs, HOST_NAME, value)
        elif key == "metadata" and isinstance(value, str):
            _put_nested(attrs, value)
        elif key != "raw_error":
            _put(attrs, PREFIX + key, value)
    exit_code = attrs.get(EXIT_CODE)
    exc = _agent_exception(md.get("raw_error"), state, exit_code)
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        _put(attrs, SIGNAL, describe_exit(exit_code)[1])
    attrs.update(exc)
    if state == STATE_FAILED:
        severity = SEVERITY_ERROR
    elif state in WARN_STATES:
        severity = SEVERITY_WARN
    else:
        severity = SEVERITY_INFO
    return MappedEvent(
        kind=KIND_AGENT,
        event_name=_text(event.name),
        body=_text(event.name),
        severity=severity,
        attributes=attrs,
        timestamp_ns=_time_ns(ts),
        exception=exc,
    )


def _time_ns(ts_ms: Any) -> int | None:
    """The event's own time in ns, if it is one OTLP can carry (after 1970, 64-bit)."""
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, (int, float)):
        return None
    if isinstance(ts_ms, float) and not math.isfinite(ts_ms):
        return None
    ns = int(ts_ms * 1_000_000)
    return ns if 0 < ns <= _INT64_MAX else None


# The last line of a Python traceback: "pkg.module.SomeError: message" (message optional).
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")
_TRACEBACK_HEAD = "Traceback (most recent call last)"


_NO_ERROR_FILE = "<NONE>"  # torch's error_file_data when a worker wrote none


def _agent_exception(raw_error: Any, state: str, exit_code: Any) -> dict[str, str]:
    exc: dict[str, str] = {}
    if isinstance(raw_error, str) and raw_error:
        exc = exception_from_text(raw_error, WORKER_FAILURE)
    elif state == STATE_FAILED:
        exc = {EXCEPTION_TYPE: WORKER_FAILURE}
    # No error file (the worker did not use torch's @record, or was killed): the
    # exit code is all there is, and says whether a signal ended it.
    no_message = exc and exc.get(EXCEPTION_MESSAGE, _NO_ERROR_FILE) == _NO_ERROR_FILE
    if no_message and isinstance(exit_code, int) and not isinstance(exit_code, bool):
        exc[EXCEPTION_MESSAGE] = describe_exit(exit_code)[0]
    return exc


def exception_from_text(text: str, default_type: str) -> dict[str, str]:
    """``exception.type/message/stacktrace`` from a traceback or torch's error-file JSON."""
    exc: dict[str, str] = {EXCEPTION_STACKTRACE: text}
    payload = _json_object(text)
    if payload is not None:
        message = payload.get("message", payload)
        if isinstance(message, dict):
            _put_str(exc, EXCEPTION_MESSAGE, message.get("message"))
            extra = message.get("extraInfo")
            if isinstance(extra, dict) and isinstance(extra.get("py_callstack"), str):
                exc[EXCEPTION_STACKTRACE] = extra["py_callstack"]
        else:
            _put_str(exc, EXCEPTION_MESSAGE, message)
        parsed = _parse_last_line(exc[EXCEPTION_STACKTRACE])
        exc[EXCEPTION_TYPE] = parsed[0] if parsed else default_type
        return exc
    parsed = _parse_last_line(text)
    if parsed:
        exc[EXCEPTION_TYPE] = parsed[0]
        _put_str(exc, EXCEPTION_MESSAGE, parsed[1])
    else:
        exc[EXCEPTION_TYPE] = default_type
        last = _last_line(text)
        if last:
            exc[EXCEPTION_MESSAGE] = last
    return exc


def _parse_last_line(text: str) -> tuple[str, str] | None:
    last = _last_line(text)
    match = _EXCEPTION_LINE.match(last) if _TRACEBACK_HEAD in text else None
    if match is None:
        return None
    return match.group(1), match.group(2) or ""


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _put_nested(attrs: dict[str, AttrValue], text: str) -> None:
    nested = _json_object(text)
    if nested is None:
        _put(attrs, METADATA, text)
        return
    for key, value in nested.items():
        # torch's agent writes these as one-element tuples: `(worker.local_rank,)`.
        unwrapped = value[0] if isinstance(value, list) and len(value) == 1 else value
        _put(attrs, f"{METADATA}.{key}", unwrapped)


def _put(attrs: dict[str, AttrValue], key: str, value: Any) -> None:
    converted = to_attribute(value)
    if converted is not None:
        attrs[key] = converted


def _put_str(target: dict[str, str], key: str, value: Any) -> None:
    if value is not None and value != "":
        target[key] = value if isinstance(value, str) else _compact_json(value)


def to_attribute(value: Any) -> AttrValue | None:
    """An OTel attribute value for ``value``; ``None`` for ``None`` (omitted)."""
    if value is None:
        return None
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not _INT64_MIN <= value <= _INT64_MAX
    ):
        return str(value)  # OTLP ints are 64-bit; a bigger one would fail its whole batch
    if isinstance(value, (str, bool, int, float)):
        # Enums of str (EventSource, NodeState) become plain strings.
        return _enum_value(value) if isinstance(value, str) else value
    if isinstance(value, (list, tuple)):
        items: list[Any] = [to_attribute(v) for v in value if v is not None]
        kinds = {type(v) for v in items}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return items
        if not items:
            return []
    return _compact_json(value)


def _compact_json(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), default=repr, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value)) if value is not None else ""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else _compact_json(value)


def _run_id(value: Any) -> str:
    text = _text(value)
    return text if text else UNKNOWN_RUN_ID


def is_int64(value: Any) -> TypeGuard[int]:
    """An int (not a bool) that OTLP can carry as one (64-bit)."""
    return (
        isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX
    )


def _int_or(value: Any, default: int) -> int:
    return value if is_int64(value) else default


def _first_int(*values: Any) -> int:
    for value in values:
        if is_int64(value):
            return int(value)
    return UNKNOWN_RANK
