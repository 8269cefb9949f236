"""Static checks of otel-collector/: no Docker needed.

Everything parses; pipelines name defined components; ports agree between the
collector config, the compose file, the backends' configs and the docs; every
attribute or label the dashboard and the data-source links query is one that the
exporter really emits (checked on what the mapping produces now, through the
SDK's in-memory exporters) and that docs/mapping.md defines; every metric name
in PromQL (dashboard, alerts) is one the package exports (METRICS below).

The real programs check what they own: the collector built from
builder-config.yaml validates every collector config (compose and Kubernetes),
and promtool checks and unit-tests the alerting rules. Both are required by
`make test` (tests/support/stack.py says how a missing one fails or skips).
Which upstream file at which tag backs each backend setting:
tests/unit/test_stack_versions.py.
"""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.benchmarks import load_benchmark
from tests.support.dashboards import (
    NOT_IN_A_CRASH_JOB,
    generator,
    panels,
    promql_labels,
    promql_metrics,
    queries,
    traceql_names,
)
from tests.support.docs import undocumented
from tests.support.memory import memory_pipeline, record_otel
from tests.support.stack import require_binary, validate_collector_config
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from tests.unit.test_spans import cycle_event
from torchelastic_otel.events import NodeState

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "otel-collector"
KUBE = STACK / "kubernetes"
DOCS = ROOT / "docs"


def _yaml(name: str) -> Any:
    return yaml.safe_load((STACK / name).read_text())


@pytest.fixture(scope="module")
def config() -> Any:
    return _yaml("config.yaml")


@pytest.fixture(scope="module")
def compose() -> Any:
    return _yaml("docker-compose.yaml")


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return json.loads((STACK / "grafana/dashboards/torchelastic-rendezvous.json").read_text())


@pytest.fixture(scope="module")
def datasources() -> Any:
    return _yaml("grafana/provisioning/datasources/datasources.yaml")["datasources"]


@pytest.fixture(scope="module")
def emitted() -> dict[str, set[str]]:
    """Attribute keys and span names the exporter emits now, for the mapping's samples."""
    with memory_pipeline() as m:
        for event in (
            rdzv_event(),
            rdzv_event(message="has joined round 1 as rank 0", rank=0),
            cycle_event(1),
            rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, rank=0),
            rdzv_event(run_id="job-8"),  # a rendezvous that fails before any cycle
            rdzv_event(NodeState.FAILED, error_trace=TRACEBACK, run_id="job-8"),
            agent_event("RENDEZVOUS", duration_ms=12.0, group_rank=0),
            agent_event("START", worker_id="1", group_rank=0),
            agent_event("FAILED", worker_id="1", group_rank=0, raw_error=TRACEBACK),
        ):
            record_otel(event)
        m.pipeline.shutdown(5000)
        logs = m.log_records()
        spans = m.finished_spans()
    return {
        "log_keys": {k for r in logs for k in (r.log_record.attributes or {})},
        "span_keys": {k for s in spans for k in (s.attributes or {})},
        "span_names": {s.name for s in spans},
        "resource_keys": {k for r in logs for k in r.resource.attributes},
    }


def test_every_file_parses() -> None:
    files = sorted(p for p in STACK.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert len(files) >= 7
    for path in files:
        text = path.read_text()
        # Kubernetes manifests hold several documents each.
        docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
        assert docs and all(docs), path


def test_pipelines_use_defined_components(config: Any) -> None:
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    assert set(service["pipelines"]) == {"traces", "logs", "metrics"}
    for name, pipeline in service["pipelines"].items():
        for kind, names in used.items():
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{name}: {kind} {component} is not defined"
                names.add(component)
        # memory_limiter must see data first, batch last
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name
        assert "debug" in pipeline["exporters"], name
    for kind, names in used.items():
        assert set(config[kind]) == names, f"unused {kind}: {set(config[kind]) - names}"
    for ext in service.get("extensions", []):
        assert ext in config["extensions"]
    assert {"otlp_grpc/jaeger", "otlp_grpc/tempo"} <= set(
        service["pipelines"]["traces"]["exporters"]
    )
    assert "otlp_http/loki" in service["pipelines"]["logs"]["exporters"]
    assert config["exporters"]["otlp_http/loki"]["endpoint"].endswith("/otlp}")
    # Prometheus' OTLP receiver is /api/v1/otlp; metrics_endpoint is the full URL.
    assert "otlp_http/prometheus" in service["pipelines"]["metrics"]["exporters"]
    prometheus = config["exporters"]["otlp_http/prometheus"]["metrics_endpoint"]
    assert _default(prometheus).endswith("/api/v1/otlp/v1/metrics")


def _default(value: str) -> str:
    """``${env:VAR:-default}`` -> ``default``."""
    match = re.fullmatch(r"\$\{env:[A-Z_]+:-(.*)\}", value)
    assert match, f"expected an env placeholder with a default: {value}"
    return match.group(1)


def _host_port(endpoint: str) -> tuple[str, int]:
    endpoint = re.sub(r"^https?://", "", endpoint).split("/")[0]
    host, port = endpoint.rsplit(":", 1)
    return host, int(port)


def _published(service: Any) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def test_ports_agree(config: Any, compose: Any, datasources: Any) -> None:
    services = compose["services"]
    # Listen addresses are env placeholders (tests move them to free ports) whose
    # defaults are the documented ports.
    protocols = config["receivers"]["otlp"]["protocols"]
    grpc = _host_port(_default(protocols["grpc"]["endpoint"]))[1]
    http = _host_port(_default(protocols["http"]["endpoint"]))[1]
    assert (grpc, http) == (4317, 4318)
    health = _host_port(_default(config["extensions"]["health_check"]["endpoint"]))[1]
    assert health == 13133 and health in _published(services["collector"])
    assert {grpc, http} <= _published(services["collector"])
    for port in services["collector"]["ports"]:
        host, container = str(port).split(":")
        assert host == container  # documented ports are the same outside

    tempo, loki = _yaml("tempo.yaml"), _yaml("loki.yaml")
    jaeger = _yaml("jaeger.yaml")
    prometheus_flags = services["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" in prometheus_flags
    backend_ports = {
        "jaeger": {
            _host_port(_default(jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]))[1]
        },
        "prometheus": {9090},
        "tempo": {
            _host_port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[
                1
            ]
        },
        "loki": {loki["server"]["http_listen_port"]},
    }
    assert services["jaeger"]["volumes"] == ["./jaeger.yaml:/etc/jaeger/config.yaml:ro"]
    exporters = {
        "otlp_grpc/jaeger": "endpoint",
        "otlp_grpc/tempo": "endpoint",
        "otlp_http/loki": "endpoint",
        "otlp_http/prometheus": "metrics_endpoint",
    }
    for name, key in exporters.items():
        host, port = _host_port(_default(config["exporters"][name][key]))
        assert host in services, name
        assert port in backend_ports[host], (name, port)
        env = services["collector"]["environment"]
        var = re.search(r"env:([A-Z_]+)", config["exporters"][name][key]).group(1)  # type: ignore[union-attr]
        assert _host_port(env[var]) == (host, port)

    grafana_targets = {
        "tempo": tempo["server"]["http_listen_port"],
        "loki": loki["server"]["http_listen_port"],
        "jaeger": _host_port(_default(jaeger["extensions"]["jaeger_query"]["http"]["endpoint"]))[1],
        "prometheus": 9090,
    }
    for ds in datasources:
        host, port = _host_port(ds["url"])
        assert host in services
        assert grafana_targets[host] == port, ds["name"]
    assert 16686 in _published(services["jaeger"])
    assert 3000 in _published(services["grafana"])
    assert 9090 in _published(services["prometheus"])

    quickstart = (DOCS / "quickstart.md").read_text()
    for needle in (
        "4317",
        "4318",
        "localhost:16686",
        "localhost:3000",
        "localhost:9090",
        "docker compose up",
    ):
        assert needle in quickstart, needle
    compose_text = (STACK / "docker-compose.yaml").read_text()
    for needle in ("localhost:4317", "localhost:16686", "localhost:3000", "localhost:9090"):
        assert needle in compose_text


def test_compose_images_pinned_health_and_mounts(compose: Any) -> None:
    services = compose["services"]
    assert set(services) == {"collector", "jaeger", "tempo", "loki", "prometheus", "grafana"}
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and re.match(r"v?\d+\.\d+\.\d+$", tag), image
        if name != "collector":  # distroless image: no command can run inside it
            assert svc["healthcheck"]["test"][0] == "CMD", name
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services
            assert cond["condition"] == "service_healthy"
            assert "healthcheck" in services[dep]
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert (STACK / source).exists(), volume


def test_datasources_link_on_run_id(datasources: Any, dashboard: Any) -> None:
    by_uid = {ds["uid"]: ds for ds in datasources}
    assert set(by_uid) == {"tempo", "loki", "jaeger", "prometheus"}
    for uid in ("tempo", "jaeger"):
        links = by_uid[uid]["jsonData"]["tracesToLogsV2"]
        assert links["datasourceUid"] == "loki"
        assert [t["key"] for t in links["tags"]] == ["run_id"]
        assert "run_id" in links["query"]
    # A service map is drawn from the service-graph series Tempo's metrics generator
    # writes to a Prometheus; pointed at Tempo itself it shows nothing.
    service_map = by_uid["tempo"]["jsonData"].get("serviceMap")
    assert service_map is None or by_uid[service_map["datasourceUid"]]["type"] == "prometheus"
    derived = by_uid["loki"]["jsonData"]["derivedFields"][0]
    assert derived["datasourceUid"] == "tempo"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] in by_uid
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in by_uid


def _loki_name(attribute: str) -> str:
    return attribute.replace(".", "_")


# Labels Loki derives itself: service.name becomes a stream label, and the log
# record's own fields (not attributes) become structured metadata.
_LOKI_BUILTIN = {"service_name", "trace_id", "span_id", "severity_text", "severity_number"}


def _loki_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:=~|!=|!~|=)\s*\"", expr))
    names |= set(re.findall(r"unwrap\s+([a-z0-9_]+)", expr))
    names |= set(re.findall(r"\{\{\s*\.([a-z0-9_]+)\s*\}\}", expr))
    names |= set(
        re.findall(r"by \(([a-z0-9_, ]+)\)", expr)[0].split(", ") if "by (" in expr else []
    )
    return {n.strip() for n in names}


def test_dashboard_queries_only_emitted_and_documented_keys(
    dashboard: Any, datasources: Any, emitted: dict[str, set[str]]
) -> None:
    loki_available = {_loki_name(k) for k in emitted["log_keys"]} | _LOKI_BUILTIN
    queried_loki: set[str] = set()
    queried_span: set[str] = set()
    span_name_patterns: set[str] = set()
    exprs = [q.text for q in queries(dashboard) if q.datasource == "loki"]
    loki_vars = [
        v
        for v in dashboard["templating"]["list"]
        if v["type"] == "query" and v["datasource"]["type"] == "loki"
    ]
    exprs += [v["definition"] for v in loki_vars]
    exprs += [v["query"]["stream"] for v in loki_vars]
    for ds in datasources:
        links = ds["jsonData"].get("tracesToLogsV2")
        if links:
            exprs.append(links["query"])
    for expr in exprs:
        queried_loki |= _loki_names(expr)
    queried_loki |= set(re.findall(r"label_values\((?:[^,]*,\s*)?([a-z_]+)\)", " ".join(exprs)))
    queried_loki |= {v["query"]["label"] for v in loki_vars}
    for query in queries(dashboard):
        if query.datasource == "tempo":
            names, span_keys, _ = traceql_names(query.text)
            queried_span |= span_keys
            span_name_patterns |= names
    # (Durations, counts and restarts come from Prometheus now.)
    assert {"run_id", "rank", "node_state", "exception_type"} <= queried_loki
    assert queried_loki - loki_available == set(), "the dashboard queries keys never emitted"
    # The lost-node keys come from a survivor's inferred part: not in these samples.
    unseen = NOT_IN_A_CRASH_JOB["span_keys"]
    assert queried_span - unseen <= emitted["span_keys"], queried_span - emitted["span_keys"]
    for pattern in span_name_patterns:
        assert any(re.fullmatch(pattern, n) for n in emitted["span_names"]), pattern
    # ... and docs/mapping.md defines every one of them.
    by_loki_name = {_loki_name(k): k for k in emitted["log_keys"]}
    attributes = {by_loki_name[n] for n in queried_loki if n in by_loki_name} | queried_span
    assert undocumented(attributes) == []
    # Loki's one index label from log attributes is a key on every record.
    indexed = _yaml("loki.yaml")["limits_config"]["otlp_config"]["log_attributes"][0]["attributes"]
    assert set(indexed) == {"run_id"} <= emitted["log_keys"]
    # label_values() lists index labels only: a variable on structured metadata
    # (rank, node_state) would stay empty.
    assert {v["query"]["label"] for v in loki_vars} <= _loki_index_labels()


# --- Loki: streams, retention, tenant -------------------------------------------------

#: Values an index label takes within one job; anything per node or per event
#: multiplies a job's streams by the node count (or worse).
ONE_VALUE_PER_JOB = {"run_id", "service_name"}


def _loki_index_labels() -> set[str]:
    """Every label Loki builds a stream from, as loki.yaml configures its OTLP endpoint."""
    otlp = _yaml("loki.yaml")["limits_config"]["otlp_config"]
    resource = otlp.get("resource_attributes", {})
    # Without ignore_defaults Loki also indexes its default resource attributes,
    # service.instance.id and k8s.pod.name among them: one stream per node.
    assert resource.get("ignore_defaults") is True, "Loki's default index labels are per node"
    labels = set()
    for block in (*resource.get("attributes_config", []), *otlp.get("log_attributes", [])):
        if block["action"] == "index_label":
            assert "regex" not in block, "an index_label regex can match per-node attributes"
            labels |= {_loki_name(a) for a in block["attributes"]}
    assert otlp.get("scope_attributes", []) == []
    return labels


def test_loki_indexes_one_stream_per_job() -> None:
    """A 1,024-node job must stay far below max_global_streams_per_user (5,000)."""
    labels = _loki_index_labels()
    assert labels == ONE_VALUE_PER_JOB, labels
    limits = _yaml("loki.yaml")["limits_config"]
    max_streams = limits.get("max_global_streams_per_user", 5000)  # Loki's default
    streams_per_job = 1  # every index label has one value per job
    # Even with Loki's rate-based sharding splitting a hot stream in a few,
    # hundreds of jobs fit in the retention window.
    assert streams_per_job * 16 * 100 <= max_streams
    # The rank and node_state keys are still on every record, as structured metadata.
    assert limits["allow_structured_metadata"] is True
    assert limits["shard_streams"]["enabled"] is True


def test_loki_retention_applies() -> None:
    """retention_period deletes nothing unless the compactor applies retention."""
    loki = _yaml("loki.yaml")
    assert loki["limits_config"]["retention_period"] == "72h"
    compactor = loki["compactor"]
    assert compactor["retention_enabled"] is True
    # Loki refuses to start with retention and no delete-request store
    # (pkg/compactor/config.go at v3.7.6); it must name a configured object store.
    assert compactor["delete_request_store"] == loki["schema_config"]["configs"][0]["object_store"]
    assert compactor["delete_request_store"] in loki["common"]["storage"]


def test_collector_sends_no_loki_tenant_the_stack_ignores(config: Any) -> None:
    """With auth_enabled false Loki files every push under "fake" (pkg/loki/modules.go)."""
    assert _yaml("loki.yaml")["auth_enabled"] is False
    headers = {k.lower() for k in config["exporters"]["otlp_http/loki"].get("headers", {})}
    assert "x-scope-orgid" not in headers
    text = (STACK / "config.yaml").read_text()
    assert '"fake"' in text  # the comment says where the data lands


# --- Tempo ------------------------------------------------------------------------------

#: Tempo's default max_bytes_per_trace (grafana/tempo@v2.6.1 modules/overrides/config.go),
#: which no trace of ours may need raised, whatever the job's size.
TEMPO_DEFAULT_MAX_BYTES = 5_000_000
#: A collector (Kubernetes' k8sattributes) adds this much resource per node and trace.
COLLECTOR_RESOURCE_BYTES = 500


def test_tempo_keeps_its_default_trace_limit() -> None:
    """The stack runs Tempo with its default per-trace limit, and the docs say why."""
    tempo = _yaml("tempo.yaml")
    limit = (
        tempo.get("overrides", {}).get("defaults", {}).get("global", {}).get("max_bytes_per_trace")
    )
    assert limit is None, "a trace must fit Tempo's default: no backend re-tuning"
    operations = (DOCS / "operations.md").read_text()
    assert "## Tempo limits" in operations
    assert f"{TEMPO_DEFAULT_MAX_BYTES:,}" in operations


def test_a_shard_trace_fits_tempos_default_at_any_job_size() -> None:
    """The largest trace is one shard: TORCHELASTIC_OTEL_TRACE_SHARD_NODES nodes' parts,
    each with its 8 workers as span events, its own resource and what a collector adds.

    benchmarks/bench_scale.py measures the same on a replayed real job (2.45 MB at
    1,024, 4,096 and 10,000 nodes x 8 workers).
    """
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from torchelastic_otel.events import Event, RdzvEvent
    from torchelastic_otel.otel.settings import Settings

    with memory_pipeline() as m:
        events: list[Event | RdzvEvent] = [
            rdzv_event(message="has joined round 1 as rank 7", rank=7),
            agent_event("RENDEZVOUS", duration_ms=12.0, group_rank=7),
        ]
        events += [
            agent_event("START", worker_id=str(w), global_rank=56 + w, group_rank=7)
            for w in range(8)
        ]
        events += [
            agent_event("FAILED", worker_id=str(w), global_rank=56 + w, group_rank=7)
            for w in range(8)
        ]
        for event in events:
            record_otel(event)
        m.pipeline.shutdown(5000)
        spans = m.finished_spans(flush=False)
    (part,) = [s for s in spans if s.name.startswith("torchelastic.cycle.node")]
    assert len(part.events) == 8
    per_node = len(encode_spans([part]).SerializeToString()) + COLLECTOR_RESOURCE_BYTES
    shard_nodes = Settings().trace_shard_nodes
    assert per_node * shard_nodes <= 0.7 * TEMPO_DEFAULT_MAX_BYTES, per_node  # room to spare
    assert shard_nodes + 1 <= 10_000  # and Jaeger's UI handles the trace


# --- Metrics ------------------------------------------------------------------------------


def test_the_metric_list_is_the_packages() -> None:
    """METRICS below names exactly the metrics semconv declares (one vocabulary)."""
    from torchelastic_otel import semconv

    generator()  # skips (or fails under make test) without grafana-foundation-sdk
    declared = {v for k, v in vars(semconv).items() if k.startswith("METRIC_")}
    assert set(METRICS) == declared


def _metrics() -> dict[str, tuple[str, str]]:
    try:
        gen = generator()
    except pytest.skip.Exception:  # at import: the tests that read METRICS skip then
        return {}
    return {name: (gen.prometheus_name(name), i.kind) for name, i in gen.INSTRUMENTS.items()}


#: The metrics torchelastic-otel exports: OTel name -> (Prometheus name after
#: Prometheus 3's OTLP translation, kind), as otel-collector/grafana/generate.py
#: derives them: ONE list for the dashboard, the alerts and the real-Prometheus tests.
METRICS: dict[str, tuple[str, str]] = _metrics()


def prometheus_series_names() -> set[str]:
    """Every series name Prometheus stores for METRICS (histograms: three)."""
    names = set()
    for name, kind in METRICS.values():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def _promql(dashboard: Any) -> list[str]:
    exprs = [q.text for q in queries(dashboard) if q.datasource == "prometheus"]
    alerts = yaml.safe_load((STACK / "prometheus/alerts.yaml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    return exprs


def test_promql_uses_only_exported_metrics(dashboard: Any) -> None:
    generator()
    exprs = _promql(dashboard)
    used = {n for e in exprs for n in promql_metrics(e) - promql_labels(e)}
    assert used - prometheus_series_names() == set()
    # Histograms are read through their buckets; counters through rate/increase.
    for expr in exprs:
        for name, kind in METRICS.values():
            if kind == "counter" and name in expr:
                assert re.search(rf"(increase|rate)\({name}\b", expr), expr
    # The dashboard's metric panels and the alerts use every metric we export
    # except none: a new metric gets a panel or an alert.
    assert {re.sub(r"_(bucket|sum|count)$", "", n) for n in used} == {
        name for name, _ in METRICS.values()
    }


def test_alerts_name_the_job_and_say_what_to_do() -> None:
    alerts = yaml.safe_load((STACK / "prometheus/alerts.yaml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "TorchelasticRestartStorm",
        "TorchelasticRendezvousSlow",
        "TorchelasticRendezvousStalled",
        "TorchelasticRestartBudgetLow",
        "TorchelasticWorkerFailures",
        "TorchelasticStalledProgress",
    }
    for rule in rules:
        assert "run_id" in rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        for key in ("summary", "description"):
            assert "{{ $labels.run_id }}" in rule["annotations"][key], (rule["alert"], key)
    # Every node counts the same group restart: per job, max over nodes.
    storm = next(r for r in rules if r["alert"] == "TorchelasticRestartStorm")
    assert storm["expr"].startswith("max by (run_id)")


def _promtool(*args: str) -> str:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [str(promtool), *args],
        cwd=STACK / "prometheus",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_checks_and_unit_tests_the_alerts() -> None:
    assert "SUCCESS: 8 rules found" in _promtool("check", "rules", "alerts.yaml")
    assert "SUCCESS" in _promtool("test", "rules", "alerts.test.yaml")


# --- the real collector validates every config --------------------------------------------


def _env_placeholders(text: str) -> set[str]:
    """Variables that ``${env:NAME}`` placeholders without a default need."""
    return set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", text))


def test_collector_validates_the_compose_config(config: Any) -> None:
    # Every placeholder in config.yaml has a default: the file runs as it is.
    assert _env_placeholders((STACK / "config.yaml").read_text()) == set()
    validate_collector_config(STACK / "config.yaml", {})


def test_benchmark_sampler_is_the_manifests(tmp_path: Path) -> None:
    """bench_scale.py measures the sampler tier on the Kubernetes manifest's own
    processors (read, not copied), and the collector accepts what it builds."""
    bench = load_benchmark("bench_scale")
    built = json.loads(bench.sampler_config())
    (configmap,) = [
        d
        for d in yaml.safe_load_all((KUBE / "collector-sampler.yaml").read_text())
        if d["kind"] == "ConfigMap"
    ]
    deployed = yaml.safe_load(configmap["data"]["config.yaml"])
    chain = deployed["service"]["pipelines"]["traces"]["processors"]
    assert built["service"]["pipelines"]["traces"]["processors"] == chain
    for name in chain:
        expected = dict(deployed["processors"][name])
        if name == "tail_sampling":
            expected["decision_wait"] = "${env:DECISION_WAIT}"
        assert built["processors"][name] == expected, name
    config = tmp_path / "sampler.yaml"
    config.write_text(bench.sampler_config())
    validate_collector_config(
        config,
        {
            "HTTP_PORT": "4318",
            "HEALTH_PORT": "13133",
            "SINK": "http://127.0.0.1:4319",
            "DECISION_WAIT": "10s",
        },
    )


def test_collector_validate_rejects_a_bad_key(tmp_path: Path) -> None:
    """The validation above can fail: a misspelt key is an error."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (STACK / "config.yaml").read_text().replace("send_batch_size:", "send_batch_sise:")
    )
    with pytest.raises(AssertionError, match="send_batch_sise"):
        validate_collector_config(bad, {})
