"""Event dataclasses, mirroring ``torch.distributed.elastic.events.api``.

The classes, their fields, defaults and field order are those of torch 2.13, and
``serialize()`` produces the same JSON text for every event torch can serialize.
Two things differ, both on inputs torch fails on:

* ``serialize()`` never raises. Metadata values JSON cannot encode (a ``Path``, a
  ``Tensor``, a lock, a self-referencing dict) are written as their ``repr()``, and
  keys JSON cannot encode as ``repr(key)``; torch raises ``TypeError`` there.
* ``deserialize()`` validates its input and raises a ``ValueError`` naming the
  offending field, where torch raises ``KeyError``, ``TypeError`` or nothing.

Example::

    >>> from torchelastic_otel.events import Event, EventSource
    >>> e = Event(name="test_event", source=EventSource.WORKER, metadata={"k": 1})
    >>> e.serialize()
    '{"name": "test_event", "source": "WORKER", "timestamp": 0, "metadata": {"k": 1}}'
    >>> Event.deserialize(e.serialize()) == e
    True
"""

import json
import operator
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum
from json.encoder import encode_basestring_ascii as _encode_string
from typing import Any, Union

__all__ = ["EventSource", "Event", "NodeState", "RdzvEvent"]  # noqa: RUF022 -- torch's order

EventMetadataValue = str | int | float | bool | None

_JSON_SCALARS = (str, int, float, bool, type(None))


class EventSource(str, Enum):
    """Known identifiers of the event producers."""

    AGENT = "AGENT"
    WORKER = "WORKER"


@dataclass
class Event:
    """
    The class represents the generic event that occurs during the torchelastic job execution.

    The event can be any kind of meaningful action.

    Args:
        name: event name.
        source: the event producer, e.g. agent or worker
        timestamp: timestamp in milliseconds when event occurred.
        metadata: additional data that is associated with the event.
    """

    name: str
    source: EventSource
    timestamp: int = 0
    metadata: dict[str, EventMetadataValue] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.serialize()

    @staticmethod
    def deserialize(data: Union[str, "Event"]) -> "Event":
        """Build an ``Event`` from its JSON text (or return an ``Event`` unchanged).

        Raises:
            ValueError: ``data`` is not valid JSON or a field is missing, unknown or
                of the wrong type; the message names the field.
            TypeError: ``data`` is neither a ``str`` nor an ``Event``.
        """
        if isinstance(data, Event):
            return data
        d = _load_object(data, "Event")
        _check_fields(d, Event)
        _check_type(d, "name", str, "Event")
        d["source"] = _enum_member(d, "source", EventSource, "Event")
        if "timestamp" in d:
            _check_type(d, "timestamp", (int, float), "Event")
        if "metadata" in d:
            _check_type(d, "metadata", dict, "Event")
        return Event(**d)

    def serialize(self) -> str:
        """Return the event as JSON text; identical to torch's for what torch accepts."""
        return _dumps(self)


class NodeState(str, Enum):
    """The states that a node can be in rendezvous."""

    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass
class RdzvEvent:
    """
    Dataclass to represent any rendezvous event.

    Args:
        name: Event name. (E.g. Current action being performed)
        run_id: The run id of the rendezvous
        message: The message describing the event
        hostname: Hostname of the node
        pid: The process id of the node
        node_state: The state of the node (INIT, RUNNING, SUCCEEDED, FAILED)
        master_endpoint: The master endpoint for the rendezvous store, if known
        rank: The rank of the node, if known
        local_id: The local_id of the node, if defined in dynamic_rendezvous.py
        error_trace: Error stack trace, if this is an error event.
    """

    name: str
    run_id: str
    message: str
    hostname: str
    pid: int
    node_state: NodeState
    master_endpoint: str = ""
    rank: int | None = None
    local_id: int | None = None
    error_trace: str = ""

    def __str__(self) -> str:
        return self.serialize()

    @staticmethod
    def deserialize(data: Union[str, "RdzvEvent"]) -> "RdzvEvent":
        """Build a ``RdzvEvent`` from its JSON text (or return one unchanged).

        Raises:
            ValueError: ``data`` is not valid JSON or a field is missing, unknown or
                of the wrong type; the message names the field.
            TypeError: ``data`` is neither a ``str`` nor a ``RdzvEvent``.
        """
        if isinstance(data, RdzvEvent):
            return data
        d = _load_object(data, "RdzvEvent")
        _check_fields(d, RdzvEvent)
        for name in ("name", "run_id", "message", "hostname"):
            _check_type(d, name, str, "RdzvEvent")
        _check_type(d, "pid", int, "RdzvEvent")
        d["node_state"] = _enum_member(d, "node_state", NodeState, "RdzvEvent")
        for name in ("master_endpoint", "error_trace"):
            if name in d:
                _check_type(d, name, str, "RdzvEvent")
        for name in ("rank", "local_id"):
            if name in d and d[name] is not None:
                _check_type(d, name, int, "RdzvEvent")
        return RdzvEvent(**d)

    def serialize(self) -> str:
        """Return the event as JSON text; identical to torch's for what torch accepts."""
        if type(self) is RdzvEvent:
            text = _dumps_flat_rdzv(self)
            if text is not None:
                return text
        return _dumps(self)


# Every rendezvous event torch's dynamic_rendezvous writes is ten strings, ints and
# Nones; writing those directly (json's own C string encoder, json.dumps' separators,
# the fields in dataclass order) gives json.dumps(asdict(event))'s exact bytes in a
# third of the time, which construct_and_record_rdzv_event's cost is mostly made of.
_RDZV_FIELDS = tuple(f.name for f in fields(RdzvEvent))
_RDZV_VALUES = operator.attrgetter(*_RDZV_FIELDS)
_RDZV_TEMPLATE = "{" + ", ".join(f"{json.dumps(n)}: %s" for n in _RDZV_FIELDS) + "}"


def _dumps_flat_rdzv(event: RdzvEvent) -> str | None:
    """``event``'s JSON if every field is a ``str`` (or str enum), ``int`` or ``None``."""
    out = []
    for value in _RDZV_VALUES(event):
        if isinstance(value, str):
            out.append(_encode_string(value))
        elif type(value) is int:
            out.append(int.__repr__(value))
        elif value is None:
            out.append("null")
        else:  # bools, floats, anything else: json.dumps' own rules
            return None
    return _RDZV_TEMPLATE % tuple(out)


def _dumps(event: Event | RdzvEvent) -> str:
    try:
        return json.dumps(_asdict_fast(event))
    except (TypeError, ValueError, RecursionError):
        # asdict deep-copies (fails on locks, sockets, ...) and json.dumps rejects
        # unknown types, odd keys and cycles; fall back value by value.
        safe = {f.name: _json_safe(getattr(event, f.name)) for f in fields(event)}
        return json.dumps(safe)


def _asdict_fast(event: Event | RdzvEvent) -> dict[str, Any]:
    """``dataclasses.asdict(event)``, without its per-value ``deepcopy`` where it is moot.

    For scalars and flat dicts of scalars (every event torch's agent and rendezvous
    write) ``asdict`` returns equal values, so ``json.dumps`` writes the same bytes;
    anything else takes ``asdict`` itself.
    """
    out = {}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if type(value) is dict:
            if not all(isinstance(v, _JSON_SCALARS) for v in value.values()):
                return asdict(event)
            value = dict(value)
        elif not isinstance(value, _JSON_SCALARS):
            return asdict(event)
        out[name] = value
    return out


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Return ``value`` if JSON can encode it, else a structure with ``repr()`` leaves."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if depth < 32 and isinstance(value, dict):
        return {_json_key(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if depth < 32 and isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    return _safe_repr(value)


def _json_key(key: Any) -> str | int | float | bool | None:
    return key if isinstance(key, _JSON_SCALARS) else _safe_repr(key)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 -- a broken __repr__ must not take the job down
        return f"<unrepresentable {type(value).__name__}>"


def _load_object(data: object, cls_name: str) -> dict[str, Any]:
    if not isinstance(data, str):
        raise TypeError(
            f"{cls_name}.deserialize expects a JSON str or a {cls_name}, got {type(data).__name__}"
        )
    try:
        d = json.loads(data)
    except ValueError as e:
        raise ValueError(f"{cls_name}: malformed JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(  # noqa: TRY004 -- malformed input, not a wrong argument type
            f"{cls_name}: expected a JSON object, got {type(d).__name__}"
        )
    return d


def _check_fields(d: dict[str, Any], cls: type) -> None:
    known = fields(cls)
    names = {f.name for f in known}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field {unknown[0]!r}")
    for f in known:
        required = f.default is MISSING and f.default_factory is MISSING
        if required and f.name not in d:
            raise ValueError(f"{cls.__name__}: missing field {f.name!r}")


def _check_type(
    d: dict[str, Any], name: str, expected: type | tuple[type, ...], cls_name: str
) -> None:
    value = d[name]
    # bool is an int subclass; a JSON true is never a valid pid or timestamp.
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        want = (
            " or ".join(t.__name__ for t in expected)
            if isinstance(expected, tuple)
            else expected.__name__
        )
        raise ValueError(
            f"{cls_name}: field {name!r} must be {want}, got {type(value).__name__} {value!r:.80}"
        )


def _enum_member(d: dict[str, Any], name: str, enum: type[Enum], cls_name: str) -> Any:
    value = d[name]
    try:
        return enum[value]
    except (KeyError, TypeError):
        choices = ", ".join(enum.__members__)
        raise ValueError(
            f"{cls_name}: field {name!r} must be one of {choices}, got {value!r:.80}"
        ) from None
