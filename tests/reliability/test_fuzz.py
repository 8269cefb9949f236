"""Property-based fuzzing of every event field and of metadata.

Wrong types, huge strings, unicode (lone surrogates included), NaN and infinities,
None, deep nesting, objects JSON cannot encode: ``record()`` never raises, every
event is exported or counted, and whatever torch round-trips, ours round-trips to
the same fields, except fields whose type breaks their annotation, which ours
refuses with a ValueError naming the field (torch builds such events silently).
Derandomized, so the suite stays deterministic.
"""

import io
import json
import logging
import re
from http import HTTPStatus
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.memory import PATHS, memory_pipeline, record_otel
from torchelastic_otel import events as ours
from torchelastic_otel.events import handlers

SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class _Str(str):
    """A str subclass: JSON writes its characters, whatever its methods say."""

    def __str__(self) -> str:
        return "not what JSON writes"


class _Int(int):
    def __repr__(self) -> str:
        return "not what JSON writes"


scalars = (
    st.sampled_from([_Str("sub"), _Str(""), _Int(7), HTTPStatus.OK])
    | st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.builds(lambda c, n: c * n, st.characters(), st.integers(10_000, 200_000))
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
unencodable = st.sampled_from([object(), {1, 2}, b"bytes", ValueError("x"), range(3), 1j])
any_values = json_values | unencodable | st.lists(unencodable, max_size=2)


def _event_kwargs(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": st.text() | values,
            "source": st.sampled_from(["AGENT", "WORKER"]) | values,
            "timestamp": st.integers(min_value=0, max_value=2**63 - 1) | values,
            "metadata": st.dictionaries(st.text(max_size=12), values, max_size=8) | values,
        }
    )


def _rdzv_kwargs(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": st.text() | values,
            "run_id": st.text() | values,
            "message": st.text() | values,
            "hostname": st.text() | values,
            "pid": st.integers() | values,
            "node_state": st.sampled_from(["INIT", "RUNNING", "SUCCEEDED", "FAILED"]) | values,
            "master_endpoint": st.text() | values,
            "rank": st.none() | st.integers() | values,
            "local_id": st.none() | st.integers() | values,
            "error_trace": st.text() | values,
        }
    )


def _build(module: ModuleType, cls: str, kwargs: dict[str, Any]) -> Any:
    kw = dict(kwargs)
    if kw.get("source") in ("AGENT", "WORKER"):
        kw["source"] = module.EventSource[kw["source"]]
    if kw.get("node_state") in ("INIT", "RUNNING", "SUCCEEDED", "FAILED"):
        kw["node_state"] = module.NodeState[kw["node_state"]]
    return getattr(module, cls)(**kw)


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(kwargs=_event_kwargs(any_values))
def test_record_never_raises_event(path: str, kwargs: dict[str, Any]) -> None:
    event = _build(ours, "Event", kwargs)
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    handlers.register_handler("fuzz-console", console, replace=True)
    with memory_pipeline(path) as m:
        record_otel(event)
        ours.record(event, "fuzz-console")
        ours.record(event, "null")
        exported = len(m.log_records())
        assert exported + m.pipeline.drop_counts()["invalid"] == 1
        assert exported == 1  # the mapping copes with every field
    assert stream.getvalue().count("\n") == 1
    json.loads(stream.getvalue())  # what console wrote is JSON (NaN as torch writes it)


@pytest.mark.parametrize("path", PATHS)
@SETTINGS
@given(kwargs=_rdzv_kwargs(any_values))
def test_record_never_raises_rdzv(path: str, kwargs: dict[str, Any]) -> None:
    event = _build(ours, "RdzvEvent", kwargs)
    with memory_pipeline(path) as m:
        record_otel(event)
        ours.record_rdzv_event(event)
        assert len(m.log_records()) == 1
    json.loads(event.serialize())


_ENUMS = {"source": ("AGENT", "WORKER"), "node_state": ("INIT", "RUNNING", "SUCCEEDED", "FAILED")}


def _well_typed(field: str, value: Any) -> bool:
    """Whether ``value`` fits the dataclass annotation of ``field``."""
    if field in _ENUMS:
        return value in _ENUMS[field]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if field == "timestamp":
        return is_int or (isinstance(value, float) and not isinstance(value, bool))
    if field == "metadata":
        return isinstance(value, dict)
    if field == "pid":
        return is_int
    if field in ("rank", "local_id"):
        return value is None or is_int
    return isinstance(value, str)


def _fields(event: Any) -> str:
    return json.dumps({k: getattr(event, k) for k in event.__dataclass_fields__}, default=repr)


@pytest.fixture(scope="module")
def torch_events() -> ModuleType:
    module: ModuleType = pytest.importorskip(
        "torch.distributed.elastic.events",
        reason="torch is not installed: round-trip fuzzing against torch skipped",
    )
    return module


@pytest.mark.parametrize("cls", ["Event", "RdzvEvent"])
def test_round_trips_whatever_torch_round_trips(torch_events: ModuleType, cls: str) -> None:
    strategy = _event_kwargs(json_values) if cls == "Event" else _rdzv_kwargs(json_values)

    @SETTINGS
    @given(kwargs=strategy)
    def check(kwargs: dict[str, Any]) -> None:
        theirs = _build(torch_events, cls, kwargs)
        mine = _build(ours, cls, kwargs)
        try:
            text = theirs.serialize()
        except (TypeError, ValueError, RecursionError):
            mine.serialize()  # torch fails, ours must not
            return
        assert mine.serialize() == text
        try:
            back = getattr(torch_events, cls).deserialize(text)
        except Exception:
            return
        try:
            mine_back = getattr(ours, cls).deserialize(text)
        except ValueError as e:
            # torch builds events whose fields break their own annotations (a name
            # that is an int, metadata that is null); ours refuses those, naming the
            # field, as documented. Anything well typed must round-trip.
            named = re.search(r"field '(\w+)'", str(e))
            assert named, e
            assert not _well_typed(named.group(1), kwargs[named.group(1)]), e
            return
        assert _fields(mine_back) == _fields(back)

    check()
