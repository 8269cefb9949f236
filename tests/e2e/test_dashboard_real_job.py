"""Every query of the Grafana dashboard and every alert, held against a real job's data.

One real torchrun job (2 nodes x 2 workers, c10d, one worker failing once, one
restart: the cheapest job with a failure and a restart) exports through the real
collector (``otel-collector/config.yaml``, built from builder-config.yaml). What
each backend would receive is kept:

- metrics: into Debian's Prometheus 2.42 (what ``make test`` has; Prometheus 3
  takes ~6 min to build) by remote write. The collector's remote-write exporter
  names series with the same translator (github.com/prometheus/otlptranslator) as
  Prometheus 3's OTLP receiver, which the stack uses; an overlay config swaps the
  exporter in, the rest of config.yaml is as shipped. ``make stack-test`` runs the
  same tests again the stack's way, into Prometheus 3's OTLP receiver. A copy of
  the OTLP goes to a local receiver, to check each metric's kind and unit.
- traces and logs: local OTLP receivers in place of Jaeger, Tempo and Loki (which
  cannot run here: AGPL, not built; no container engine).

Then, for the committed dashboard (tests/unit/test_dashboards.py proves it is the
generator's output):

- each PromQL query (panels, the run variable) is executed with Grafana's
  variables filled in, and must return data, unless its panel is listed in
  ``EXPECTED_EMPTY`` (signals a crash-only job cannot produce: lost nodes, stalls,
  progress, goodput; those are name-checked against semconv only);
- each alert of prometheus/alerts.yaml is executed: those this job must fire fire,
  and the others' expressions without their threshold return data;
- each TraceQL query's span names and attribute keys, and each LogQL query's labels
  (Loki: dots become underscores) and filter values, are ones the job emitted,
  except the lost-node and stall names of ``NOT_IN_A_CRASH_JOB``.
"""

import dataclasses
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboards import (
    NOT_IN_A_CRASH_JOB,
    Query,
    dashboard,
    generator,
    legend_labels,
    logql_filters,
    logql_labels,
    promql_labels,
    promql_metrics,
    queries,
    traceql_names,
)
from tests.support.stack import (
    STACK,
    OtlpMetricsHttpReceiver,
    Prometheus,
    poll,
    require_binary,
    run_otelcol,
    run_prometheus,
)
from torchelastic_otel import semconv as sc
from torchelastic_otel.otlp_data import LogItem, MetricPointItem, SpanItem
from torchelastic_otel.receiver import OtlpGrpcReceiver, OtlpHttpReceiver

pytest.importorskip("torch.distributed.run", reason="torch is not installed: e2e tests skipped")

#: (panel title, refId) of PromQL targets whose signal this job cannot produce.
EXPECTED_EMPTY = {
    ("Node states", "B"): "no node is lost",
    ("Lost nodes and stalled workers", "A"): "no node is lost",
    ("Lost nodes and stalled workers", "B"): "the demo's workers report no progress",
    ("Goodput per node", "A"): "the demo's workers report no progress",
    ("Training step per worker", "A"): "the demo's workers report no progress",
    ("Seconds since each worker's last step", "A"): "the demo's workers report no progress",
    ("Failures by type", "B"): "rendezvous failures happen only at exit, and not always",
}

#: Alerts this job must fire (True), must not fire (False: then the expression
#: without its threshold must return data), or may fire (None).
ALERTS = {
    "TorchelasticRestartStorm": False,  # 1 restart, not 3
    "TorchelasticRendezvousSlow": False,  # seconds, not 5 minutes
    "TorchelasticRendezvousStalled": False,  # every node left its rendezvous
    "TorchelasticRestartBudgetLow": True,  # --max-restarts 1, used
    "TorchelasticWorkerFailures": True,  # RuntimeError, and its peer's SIGTERM
    "TorchelasticRendezvousFailures": None,  # a heartbeat may fail at exit
    "TorchelasticNodeLost": False,  # every node stayed (its counter is there, at 0)
    "TorchelasticStalledProgress": False,  # no worker stopped stepping
}

#: Grafana's $__rate_interval at this dashboard's resolution: 4 x the Prometheus
#: data source's timeInterval (datasources.yaml: 15s).
RATE_INTERVAL_S = 60
STEP_S = 2


@dataclass
class Job:
    """What the real job sent, as each backend got it."""

    run_id: str
    start: float  # Unix seconds
    end: float
    prometheus: Prometheus
    spans: list[SpanItem]
    logs: list[LogItem]
    metrics: list[MetricPointItem]


#: How the job's metrics reach Prometheus: ``make test`` runs the first (Debian's
#: 2.42 is there with promtool); ``make stack-test`` the second, the stack's own way
#: (Prometheus 3's OTLP receiver, built from Go modules), proving the two store the
#: same series.
PATHS = ("debian-remote-write", "prometheus-3-otlp")


def _overlay(path: Path, remote_write: bool) -> Path:
    """config.yaml's metrics pipeline, with a copy of the OTLP to a local receiver.

    With ``remote_write``, remote write to Prometheus 2.42 in place of the OTLP
    exporter to Prometheus 3.
    """
    exporters: dict[str, Any] = {
        "otlp_http/capture": {"metrics_endpoint": "${env:CAPTURE_OTLP_ENDPOINT}"}
    }
    pipeline = ["otlp_http/prometheus", "otlp_http/capture", "debug"]
    if remote_write:
        exporters["prometheusremotewrite"] = {
            "endpoint": "${env:PROMETHEUS_REMOTE_WRITE_ENDPOINT}",
            # Every resource attribute a label; Prometheus 3 promotes a list
            # (prometheus.yml), which test_labels_exist_in_prometheus_3 holds the
            # dashboard to.
            "resource_to_telemetry_conversion": {"enabled": True},
        }
        pipeline[0] = "prometheusremotewrite"
    path.write_text(
        yaml.safe_dump(
            {
                "exporters": exporters,
                "service": {"pipelines": {"metrics": {"exporters": pipeline}}},
            }
        )
    )
    return path


@pytest.fixture(scope="module", params=PATHS)
def job(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    generator()  # before a 20 s job: skips or fails at once without the SDK
    remote_write = request.param == "debian-remote-write"
    if not remote_write:
        require_binary("prometheus")
    work = tmp_path_factory.mktemp("dashboard-job")
    (work / "prometheus").mkdir()
    run_id = f"dash-{uuid.uuid4().hex[:8]}"
    with (
        OtlpGrpcReceiver() as tempo,
        OtlpGrpcReceiver() as jaeger,
        OtlpHttpReceiver() as loki,
        OtlpMetricsHttpReceiver() as capture,
        run_prometheus(work / "prometheus", debian=remote_write) as prometheus,
    ):
        env = {
            "TEMPO_OTLP_ENDPOINT": tempo.endpoint.removeprefix("http://"),
            "JAEGER_OTLP_ENDPOINT": jaeger.endpoint.removeprefix("http://"),
            "LOKI_OTLP_ENDPOINT": f"{loki.endpoint}/otlp",
            "PROMETHEUS_OTLP_ENDPOINT": prometheus.otlp_metrics_endpoint,
            "PROMETHEUS_REMOTE_WRITE_ENDPOINT": prometheus.remote_write_endpoint,
            "CAPTURE_OTLP_ENDPOINT": f"{capture.endpoint}/v1/metrics",
            "BATCH_TIMEOUT": "100ms",
        }
        overlay = _overlay(work / "metrics.yaml", remote_write)
        with run_otelcol(STACK / "config.yaml", env, work, overlays=[overlay]) as collector:
            from torchelastic_otel.demo.job import run_job

            agents = {
                k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TORCHELASTIC_"))
            }
            agents.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.grpc_endpoint,
                # Rendezvous events on: the keep-alive heartbeat counter.
                TORCHELASTIC_OTEL_RDZV_EVENTS="1",
                # Samples every second, so that rate() and increase() have two in
                # a rate interval of a 30 s job (the default is 60 s).
                OTEL_METRIC_EXPORT_INTERVAL="1000",
            )
            start = time.time()
            result = run_job(run_id, env=agents, fail_once_ranks=[3], max_restarts=1)
            end = time.time()
            assert result.returncodes == [0, 0], "\n".join(o[-2000:] for o in result.outputs)
            # Everything through: both cycle roots, the failures, the last export
            # of each node (4 rendezvous observations: 2 rounds x 2 nodes).
            rounds = f'sum(torchelastic_rendezvous_duration_seconds_count{{run_id="{run_id}"}})'

            def arrived() -> bool:
                roots = {s["name"] for s in tempo.received.spans if s["parent_span_id"] == ""}
                failed = [
                    r
                    for r in loki.received.logs
                    if r["attributes"].get(sc.NODE_STATE) == sc.STATE_FAILED
                ]
                counted = prometheus.query(rounds)
                return (
                    {f"{sc.CYCLE_SPAN} 0", f"{sc.CYCLE_SPAN} 1"} <= roots
                    and bool(failed)
                    and bool(counted)
                    and float(counted[0]["value"][1]) == 4
                )

            assert poll(arrived, timeout_s=30, interval_s=0.5), collector.log()[-3000:]
            time.sleep(0.5)  # the collector's last batches (100 ms)
            yield Job(
                run_id,
                start,
                end,
                prometheus,
                [s for s in tempo.received.spans if s["attributes"].get(sc.RUN_ID) == run_id],
                [r for r in loki.received.logs if r["attributes"].get(sc.RUN_ID) == run_id],
                list(capture.received.metrics),
            )


def _promql(query: Query, job: Job) -> str:
    """The query as Grafana sends it for this run, over the job's time range."""
    range_s = math.ceil(job.end - job.start) + 2 * RATE_INTERVAL_S
    # No regex metacharacter to escape (Grafana would): the value stands for itself.
    assert re.fullmatch(r"[a-z0-9-]+", job.run_id)
    return (
        query.text.replace("$run_id", job.run_id)
        .replace("$__rate_interval", f"{RATE_INTERVAL_S}s")
        .replace("$__range", f"{range_s}s")
    )


def _values(result: list[dict[str, Any]]) -> list[float]:
    points = [v for series in result for v in series.get("values", [series.get("value")])]
    return [float(v[1]) for v in points if v is not None]


def _run(query: Query, job: Job) -> list[dict[str, Any]]:
    promql = _promql(query, job)
    if query.instant:
        return job.prometheus.query(promql, at=job.end + 2)
    return job.prometheus.query_range(promql, job.start - 5, job.end + 5, STEP_S)


def _prometheus_queries() -> list[Query]:
    return [q for q in queries(dashboard()) if q.datasource == "prometheus"]


def test_every_promql_query_returns_data(job: Job) -> None:
    board_queries = _prometheus_queries()
    listed = {(q.panel, q.ref) for q in board_queries}
    assert set(EXPECTED_EMPTY) <= listed, set(EXPECTED_EMPTY) - listed
    gen = generator()
    known = {gen.prometheus_name(m) for m in gen.INSTRUMENTS}
    empty = []
    for query in board_queries:
        if query.panel.startswith("variable "):
            continue  # label_values(): below
        # Name-checked, all of them: every series is one of semconv's metrics.
        metrics = {re.sub(r"_(bucket|sum|count)$", "", m) for m in promql_metrics(query.text)}
        metrics -= promql_labels(query.text)
        assert metrics and metrics <= known, (query, metrics - known)
        result = _run(query, job)  # executes: a query Prometheus refuses fails here
        if (query.panel, query.ref) in EXPECTED_EMPTY:
            continue
        if not _values(result):
            empty.append(f"{query.panel} [{query.ref}]: {_promql(query, job)}")
    assert not empty, "no data for:\n" + "\n".join(empty)


def _one(query: tuple[str, str], job: Job) -> list[float]:
    (found,) = [q for q in _prometheus_queries() if (q.panel, q.ref) == query]
    return _values(_run(found, job))


def test_the_panels_tell_what_happened(job: Job) -> None:
    """Not just data: the numbers a user reads off the panels for this job."""
    # One group restart (each node counts it; the stat is the max over nodes).
    assert [round(v) for v in _one(("Restarts", "A"), job)] == [1]
    # The failing worker (RuntimeError) and its peer on that node (SIGTERM).
    assert _one(("Worker failures", "A"), job) == [2.0]
    assert _one(("Restarts left", "A"), job) == [0.0]
    assert _one(("Restarts left", "B"), job) == [1.0]
    assert _one(("Nodes in rendezvous now", "A"), job) == [0.0]
    # Histograms too: over the whole run, every rendezvous (2 rounds x 2 nodes),
    # the first round's included although its series start at its observation
    # (increase() alone sees the second round only).
    gen = generator()
    whole = Query("", "", "prometheus", "", instant=True)
    plain = f"sum(increase({gen.series(sc.METRIC_RENDEZVOUS_DURATION, '_count')}[$__range]))"
    born = gen.increase_or_new(sc.METRIC_RENDEZVOUS_DURATION, sc.RUN_ID, "$__range", "_count")
    (seen_plain,) = _values(_run(dataclasses.replace(whole, text=plain), job))
    (seen_born,) = _values(_run(dataclasses.replace(whole, text=born), job))
    assert seen_plain < 3 and round(seen_born) == 4, (seen_plain, seen_born)
    by_type = job.prometheus.query_range(
        _promql(next(q for q in _prometheus_queries() if q.panel == "Failures by type"), job),
        job.start - 5,
        job.end + 5,
        STEP_S,
    )
    assert {s["metric"]["error_type"] for s in by_type} == {"RuntimeError", "SIGTERM"}
    # The timeline: both nodes, running, and the failed node shown failed.
    (states_query,) = [
        q for q in _prometheus_queries() if q.panel == "Node states" and q.ref == "A"
    ]
    states = job.prometheus.query_range(
        _promql(states_query, job), job.start - 5, job.end + 5, STEP_S
    )
    assert len({s["metric"]["instance"] for s in states}) == 2, states
    seen = set(_values(states))
    assert seen <= set(gen.STATES), seen
    assert {gen.STATE_RUNNING, gen.STATE_FAILED} <= seen, seen
    failed_nodes = {s["metric"]["instance"] for s in states if gen.STATE_FAILED in _values([s])}
    assert len(failed_nodes) == 1, states


def test_the_run_variable_lists_the_run(job: Job) -> None:
    (variable,) = [q for q in _prometheus_queries() if q.panel == "variable run_id"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable.text).groups()  # type: ignore[union-attr]
    values = {s["metric"][label] for s in job.prometheus.query(metric, at=job.end)}
    assert job.run_id in values


def _alerts() -> dict[str, str]:
    rules = yaml.safe_load((STACK / "prometheus/alerts.yaml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def test_every_alert_expression_runs_on_the_job(job: Job) -> None:
    alerts = _alerts()
    assert set(alerts) == set(ALERTS), "a new alert: say what this job does to it"
    at = job.end + 2
    selected = {}
    for name, expr in alerts.items():
        for_run = [
            r for r in job.prometheus.query(expr, at=at) if r["metric"].get("run_id") == job.run_id
        ]
        selected[name] = for_run
        if ALERTS[name] is True:
            assert for_run, f"{name} does not fire: {expr}"
        elif ALERTS[name] is False:
            assert not for_run, f"{name} fires: {for_run}"
            core = re.sub(r"\s*(>=|<=|==|>|<)\s*[0-9.]+\s*$", "", expr.strip())
            assert core != expr.strip(), f"{name}: no threshold to take off"
            core_result = job.prometheus.query(core, at=at)
            assert any(r["metric"].get("run_id") == job.run_id for r in core_result), (
                f"{name}: no data for {core}"
            )
    # The failure classes, as the alert's labels say them.
    assert {r["metric"]["error_type"] for r in selected["TorchelasticWorkerFailures"]} == {
        "RuntimeError",
        "SIGTERM",
    }


def test_metric_kinds_and_units_are_the_generators(job: Job) -> None:
    """What the agents send is what generate.py derives Prometheus names from."""
    gen = generator()
    sent = {(p["name"], p["kind"], p["unit"]) for p in job.metrics if p["scope"] == sc.SCOPE}
    kinds = {"sum": "counter", "gauge": "gauge", "histogram": "histogram"}
    got = {name: gen.Instrument(kinds[kind], unit) for name, kind, unit in sent}
    assert len(got) == len(sent), sent
    for name, instrument in got.items():
        assert gen.INSTRUMENTS[name] == instrument, name
    # ... and the names the real translator gave them are the generator's.
    stored = {s["metric"]["__name__"] for s in job.prometheus.query(f'{{run_id="{job.run_id}"}}')}
    expected = set()
    for name, instrument in got.items():
        base = gen.prometheus_name(name)
        suffixes = ("_bucket", "_sum", "_count") if instrument.kind == "histogram" else ("",)
        expected |= {base + s for s in suffixes}
    assert expected <= stored, expected - stored


def test_labels_exist_in_prometheus_3(job: Job) -> None:
    """Grouping and legend labels are ones Prometheus 3 keeps (prometheus.yml's otlp block)."""
    config = yaml.safe_load((STACK / "prometheus/prometheus.yml").read_text())
    promoted = {
        re.sub(r"[^a-z0-9_]", "_", a) for a in config["otlp"]["promote_resource_attributes"]
    }
    point_labels = {re.sub(r"[^A-Za-z0-9_]", "_", k) for p in job.metrics for k in p["attributes"]}
    # Labels of the expected-empty signals' attributes, from semconv.
    unseen = {re.sub(r"[^A-Za-z0-9_]", "_", k) for k in (sc.LOST_REASON, sc.LOCAL_RANK)}
    available = {"job", "instance", "le"} | promoted | point_labels | unseen
    board = dashboard()
    used = set(legend_labels(board))
    for query in _prometheus_queries():
        used |= promql_labels(query.text)
    for expr in _alerts().values():
        used |= promql_labels(expr)
    assert used - available == set()


def test_traceql_names_are_what_the_job_emitted(job: Job) -> None:
    names = {s["name"] for s in job.spans}
    span_keys = {k for s in job.spans for k in s["attributes"]}
    resource_keys = {k for s in job.spans for k in s["resource"]}
    declared = {v for k, v in vars(sc).items() if isinstance(v, str) and not k.startswith("_")}
    tempo = [q for q in queries(dashboard()) if q.datasource == "tempo"]
    assert tempo
    for query in tempo:
        if query.text.startswith("${__data"):
            continue  # a trace id from the row clicked
        patterns, keys, resources = traceql_names(query.text)
        assert patterns, query
        for pattern in patterns:
            assert any(re.fullmatch(pattern, n) for n in names), (query, pattern, names)
        unseen = NOT_IN_A_CRASH_JOB["span_keys"]
        assert keys - unseen <= span_keys, (query, keys - span_keys)
        assert keys & unseen <= declared
        assert resources <= resource_keys, (query, resources - resource_keys)


def test_logql_names_are_what_the_job_emitted(job: Job) -> None:
    # Loki's OTLP endpoint: attributes (record and resource) become structured
    # metadata with dots as underscores; trace and span ids and severity too.
    keys = {k for r in job.logs for k in (*r["attributes"], *r["resource"])}
    labels = {k.replace(".", "_") for k in keys}
    labels |= {"trace_id", "span_id", "severity_text", "severity_number"}
    values: dict[str, set[str]] = {}
    for r in job.logs:
        for k, v in r["attributes"].items():
            values.setdefault(k.replace(".", "_"), set()).add(str(v))
    loki = [q for q in queries(dashboard()) if q.datasource == "loki"]
    sources = yaml.safe_load(
        (STACK / "grafana/provisioning/datasources/datasources.yaml").read_text()
    )["datasources"]
    for ds in sources:
        links = ds["jsonData"].get("tracesToLogsV2")
        if links:  # Tempo's and Jaeger's "Logs for this span"
            text = re.sub(r"\$\$\{[^}]+\}", "x", links["query"])
            loki.append(Query(f"data source {ds['name']}", "", "loki", text))
    assert loki
    unseen_names = {v.replace(".", "_") for v in NOT_IN_A_CRASH_JOB["record_names"]}
    for query in loki:
        assert logql_labels(query.text) <= labels, (query, logql_labels(query.text) - labels)
        for label, op, value in logql_filters(query.text):
            if label not in values or "$" in value or value in (".+", "x"):
                continue  # a variable, an id from the row clicked, or any value
            wanted = set(value.split("|")) if op == "=~" else {value}
            wanted = {w.replace("\\.", ".") for w in wanted}
            if label == sc.NODE_STATE:
                wanted -= NOT_IN_A_CRASH_JOB["states"]
            if label == sc.NAME.replace(".", "_"):
                assert {w.replace(".", "_") for w in wanted} <= unseen_names, query
                continue  # the lost-node and stall records: name-checked (semconv)
            assert wanted <= values[label], (query, label, wanted - values[label])
