"""OTLP JSON read with msgspec (the timeline extra) and with the standard library: one result.

``read_otlp_json`` takes msgspec's typed decoder when msgspec is installed and falls
back to ``json`` per line (for lines the typed decoder does not take, and when
msgspec is missing). Every test here runs on both paths and, where it can, checks
that they agree item for item.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.timeline_synth import synth_job
from torchelastic_otel import otlp_data
from torchelastic_otel.otlp_data import OtlpFileError, Received, read_otlp_json, write_otlp_json

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "demo-job.otlp.jsonl"


@pytest.fixture(params=["msgspec", "stdlib"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "msgspec":
        pytest.importorskip("msgspec", reason="msgspec (the timeline extra) is not installed")
        assert otlp_data._fast_decoder() is not None
    else:
        monkeypatch.setattr(otlp_data, "_fast_decoder", lambda: None)
    yield request.param


def _stdlib(path: Path, **kwargs: Any) -> Received:
    fast = otlp_data._fast_decoder
    try:
        otlp_data._fast_decoder = lambda: None  # type: ignore[assignment]
        return read_otlp_json(path, **kwargs)
    finally:
        otlp_data._fast_decoder = fast


def test_a_real_job_reads_the_same(decoder: str) -> None:
    got = read_otlp_json(DATA)
    want = _stdlib(DATA)
    assert got.logs == want.logs and len(got.logs) > 50
    assert got.spans == want.spans and len(got.spans) > 10
    assert got.requests == want.requests


def test_a_written_job_reads_back(decoder: str, tmp_path: Path) -> None:
    received = synth_job(nodes=20, workers=2, rounds=2, missing={1: [3]})
    path = tmp_path / "synth.jsonl"
    write_otlp_json(received, path)
    again = read_otlp_json(path)
    assert again.logs == received.logs
    assert again.spans == received.spans


_TRACE = "0123456789abcdef0123456789abcdef"
_SPAN = "0123456789abcdef"
# Every AnyValue kind, ids in hex and base64, enums by name and by number, int64 as
# string and as number, a metrics-only line, fields that are null or missing.
_LINES = [
    {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "h"}}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "s"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1700000000000000001",
                                "observedTimeUnixNano": 1700000000000000002,
                                "severityNumber": "SEVERITY_NUMBER_ERROR",
                                "severityText": "ERROR",
                                "eventName": "e",
                                "traceId": _TRACE.upper(),
                                "spanId": "ASNFZ4mrze8=",  # base64 of 0123456789abcdef
                                "body": {"kvlistValue": {"values": [{"key": "k"}]}},
                                "attributes": [
                                    {"key": "s", "value": {"stringValue": ""}},
                                    {"key": "i", "value": {"intValue": "-5"}},
                                    {"key": "n", "value": {"intValue": 7}},
                                    {"key": "b", "value": {"boolValue": False}},
                                    {"key": "d", "value": {"doubleValue": 1.5}},
                                    {"key": "nan", "value": {"doubleValue": "Infinity"}},
                                    {
                                        "key": "a",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "x"}, {"intValue": "1"}]
                                            }
                                        },
                                    },
                                    {"key": "bytes", "value": {"bytesValue": "AAE="}},
                                    {"key": "none", "value": {}},
                                    {"key": "missing"},
                                ],
                                "droppedAttributesCount": 0,
                            },
                            {"severityNumber": 9, "body": {}, "attributes": None},
                        ],
                    },
                    {"scope": None, "logRecords": [{"body": {"stringValue": "plain"}}]},
                ],
            }
        ]
    },
    {"resourceMetrics": [{"scopeMetrics": []}]},
    {
        "resourceSpans": [
            {
                "resource": None,
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": _TRACE,
                                "spanId": _SPAN,
                                "parentSpanId": "",
                                "name": "torchelastic.cycle 0",
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "status": {"code": "STATUS_CODE_ERROR", "message": "m"},
                                "events": [
                                    {
                                        "timeUnixNano": "3",
                                        "name": "ev",
                                        "attributes": [{"key": "k", "value": {"intValue": "4"}}],
                                    }
                                ],
                                "links": [{"traceId": _TRACE, "spanId": _SPAN}],
                            },
                            {"name": "bare", "status": {"code": 1}},
                        ]
                    }
                ],
            }
        ],
        "resourceLogs": [],
    },
]


def test_every_value_kind_and_form_reads_the_same(decoder: str, tmp_path: Path) -> None:
    path = tmp_path / "kinds.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in _LINES) + "\n\n")
    got = read_otlp_json(path)
    assert got.logs == _stdlib(path).logs
    assert got.spans == _stdlib(path).spans
    first, nulls, plain = got.logs
    assert first["time_unix_nano"] == 1700000000000000001
    assert first["observed_time_unix_nano"] == 1700000000000000002
    assert first["severity_number"] == 17
    assert first["trace_id"] == _TRACE and first["span_id"] == _SPAN
    assert first["body"] == {"k": None}
    assert first["resource"] == {"host.name": "h"} and first["scope"] == "s"
    assert first["attributes"] == {
        "s": "",
        "i": -5,
        "n": 7,
        "b": False,
        "d": 1.5,
        "nan": float("inf"),
        "a": ["x", 1],
        "bytes": b"\x00\x01",
        "none": None,
        "missing": None,
    }
    assert nulls["attributes"] == {} and nulls["body"] is None  # null and {} alike
    assert nulls["severity_number"] == 9
    assert plain["body"] == "plain" and plain["scope"] == ""
    span, bare = got.spans
    assert span["status_code"] == 2 and span["status_message"] == "m"
    assert span["events"] == [{"name": "ev", "time": 3, "attributes": {"k": 4}}]
    assert span["links"] == [{"trace_id": _TRACE, "span_id": _SPAN, "attributes": {}}]
    assert bare["status_code"] == 1 and bare["trace_id"] == "" and bare["resource"] == {}
    assert got.requests == 3  # logs, then spans and (empty) logs; metrics are not counted


def test_keep_log_filters_alike(decoder: str) -> None:
    def keep(name: str, severity: int) -> bool:
        return name.startswith("torchelastic.worker")

    got = read_otlp_json(DATA, keep_log=keep)
    assert got.logs == _stdlib(DATA, keep_log=keep).logs
    assert got.logs and all(log["event_name"].startswith("torchelastic.worker") for log in got.logs)


def _records(record: str) -> str:
    return '{"resourceLogs": [{"scopeLogs": [{"logRecords": [' + record + "]}]}]}\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no OTLP data"),
        ("\n  \n", "no OTLP data"),
        ("not json at all\n", ":1: not JSON"),
        ("[1, 2]\n", ":1: not OTLP JSON"),
        ('{"hello": 1}\n', ":1: not OTLP JSON"),
        ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}\n', ":1: malformed"),
        ('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": 1}]}]}]}\n', "malformed"),
        ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}\n', "malformed"),
        (_records('{"severityNumber": "LOUD"}'), "malformed"),
        ('{"resourceLogs": []}\n{"resourceSpans": [{"resource": 3}]}\n', ":2: malformed"),
        (_records('{"attributes": [{"value": {}}]}'), "malformed"),  # no key
    ],
)
def test_bad_lines_fail_alike(decoder: str, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(OtlpFileError, match=message) as got:
        read_otlp_json(path)
    with pytest.raises(OtlpFileError) as want:
        _stdlib(path)
    assert str(got.value) == str(want.value)


def test_a_line_msgspec_refuses_is_read_once(decoder: str, tmp_path: Path) -> None:
    """A line the typed decoder gives up on half-way adds nothing before the fallback."""
    line = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [{"name": "a"}, {"name": "b", "attributes": None}]}]}
        ]
    }
    path = tmp_path / "null.jsonl"
    path.write_text(json.dumps(line) + "\n")
    fast = otlp_data._fast_decoder()
    if fast is not None:
        spans: list[Any] = []
        with pytest.raises(ValueError, match="attributes"):
            fast(path.read_bytes(), [], spans, None)
        assert spans == []
    got = read_otlp_json(path)
    assert [s["name"] for s in got.spans] == ["a", "b"]
