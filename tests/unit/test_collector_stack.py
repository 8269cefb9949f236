"""Static checks of otel-collector/: no Docker needed.

Everything parses; pipelines name defined components; ports agree between the
collector config, the compose file, the backends' configs and the docs; and every
attribute or label the dashboard and the data-source links query is one that the
exporter really emits (checked on what the mapping produces now, through the
SDK's in-memory exporters) and that docs/mapping.md defines.
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.docs import undocumented
from tests.support.memory import memory_pipeline, record_otel
from tests.unit.test_mapping import TRACEBACK, agent_event, rdzv_event
from torchelastic_otel.events import NodeState

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "otel-collector"
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
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        assert data, path


def test_pipelines_use_defined_components(config: Any) -> None:
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    assert set(service["pipelines"]) == {"traces", "logs"}
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
    assert {"otlp/jaeger", "otlp/tempo"} <= set(service["pipelines"]["traces"]["exporters"])
    assert "otlphttp/loki" in service["pipelines"]["logs"]["exporters"]
    assert config["exporters"]["otlphttp/loki"]["endpoint"].endswith("/otlp}")


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
    grpc = _host_port(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    http = _host_port(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"])[1]
    assert (grpc, http) == (4317, 4318)
    assert {grpc, http} <= _published(services["collector"])
    for port in services["collector"]["ports"]:
        host, container = str(port).split(":")
        assert host == container  # documented ports are the same outside

    tempo, loki = _yaml("tempo.yaml"), _yaml("loki.yaml")
    backend_ports = {
        "jaeger": {4317},  # Jaeger's OTLP gRPC receiver (COLLECTOR_OTLP_ENABLED)
        "tempo": {
            _host_port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[
                1
            ]
        },
        "loki": {loki["server"]["http_listen_port"]},
    }
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name in ("otlp/jaeger", "otlp/tempo", "otlphttp/loki"):
        host, port = _host_port(_default(config["exporters"][name]["endpoint"]))
        assert host in services, name
        assert port in backend_ports[host], (name, port)
        env = services["collector"]["environment"]
        var = re.search(r"env:([A-Z_]+)", config["exporters"][name]["endpoint"]).group(1)  # type: ignore[union-attr]
        assert _host_port(env[var]) == (host, port)

    grafana_targets = {
        "tempo": tempo["server"]["http_listen_port"],
        "loki": loki["server"]["http_listen_port"],
        "jaeger": 16686,
    }
    for ds in datasources:
        host, port = _host_port(ds["url"])
        assert host in services
        assert grafana_targets[host] == port, ds["name"]
    assert 16686 in _published(services["jaeger"])
    assert 3000 in _published(services["grafana"])

    quickstart = (DOCS / "quickstart.md").read_text()
    for needle in ("4317", "4318", "localhost:16686", "localhost:3000", "docker compose up"):
        assert needle in quickstart, needle
    compose_text = (STACK / "docker-compose.yaml").read_text()
    for needle in ("localhost:4317", "localhost:16686", "localhost:3000"):
        assert needle in compose_text


def test_compose_images_pinned_health_and_mounts(compose: Any) -> None:
    services = compose["services"]
    assert set(services) == {"collector", "jaeger", "tempo", "loki", "grafana"}
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and re.match(r"\d+\.\d+\.\d+$", tag), image
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
    assert set(by_uid) == {"tempo", "loki", "jaeger"}
    for uid in ("tempo", "jaeger"):
        links = by_uid[uid]["jsonData"]["tracesToLogsV2"]
        assert links["datasourceUid"] == "loki"
        assert [t["key"] for t in links["tags"]] == ["run_id"]
        assert "run_id" in links["query"]
    derived = by_uid["loki"]["jsonData"]["derivedFields"][0]
    assert derived["datasourceUid"] == "tempo"
    for panel in dashboard["panels"]:
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
    exprs = [t.get("expr", "") for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    exprs += [v["query"]["stream"] for v in dashboard["templating"]["list"]]
    for ds in datasources:
        links = ds["jsonData"].get("tracesToLogsV2")
        if links:
            exprs.append(links["query"])
    for expr in exprs:
        queried_loki |= _loki_names(expr)
    queried_loki |= set(re.findall(r"label_values\((?:[^,]*,\s*)?([a-z_]+)\)", " ".join(exprs)))
    queried_loki |= {v["query"]["label"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            query = target.get("query", "")
            queried_span |= set(re.findall(r"span\.([a-zA-Z0-9_.]+)", query))
            span_name_patterns |= set(re.findall(r'name\s*=~?\s*"([^"]+)"', query))
    assert {
        "run_id",
        "rank",
        "node_state",
        "exception_type",
        "torchelastic_duration_ms",
    } <= queried_loki
    assert queried_loki - loki_available == set(), "the dashboard queries keys never emitted"
    assert queried_span <= emitted["span_keys"], queried_span - emitted["span_keys"]
    for pattern in span_name_patterns:
        assert any(re.fullmatch(pattern, n) for n in emitted["span_names"]), pattern
    # ... and docs/mapping.md defines every one of them.
    by_loki_name = {_loki_name(k): k for k in emitted["log_keys"]}
    attributes = {by_loki_name[n] for n in queried_loki if n in by_loki_name} | queried_span
    assert undocumented(attributes) == []
    # Loki's index labels are three keys the exporter puts on every record.
    indexed = _yaml("loki.yaml")["limits_config"]["otlp_config"]["log_attributes"][0]["attributes"]
    assert set(indexed) == {"run_id", "rank", "node_state"} <= emitted["log_keys"]
