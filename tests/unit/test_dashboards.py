"""The Grafana dashboard is generated (otel-collector/grafana/generate.py) and current.

What its queries return on a real job's data: tests/e2e/test_dashboard_real_job.py.
"""

import json
from typing import Any

import yaml

from tests.support.dashboards import DASHBOARD, dashboard, generator, panels, queries
from tests.support.stack import STACK
from torchelastic_otel import semconv as sc


def test_committed_dashboard_is_what_the_generator_writes() -> None:
    gen = generator()
    expected = gen.generated()
    assert set(expected) == {DASHBOARD}, "a new dashboard file: commit it and list it here"
    for path, text in expected.items():
        assert path.read_text() == text, (
            f"{path.name} differs from the generator's output: run "
            "python otel-collector/grafana/generate.py and commit the result"
        )
    assert gen.main(["--check"]) == 0


def test_every_metric_has_an_instrument_and_a_prometheus_name() -> None:
    gen = generator()
    declared = {v for k, v in vars(sc).items() if k.startswith("METRIC_")}
    assert set(gen.INSTRUMENTS) == declared
    names = {gen.prometheus_name(m) for m in declared}
    assert len(names) == len(declared)
    # The translator's rules, on the cases it distinguishes (the e2e test checks
    # every name against the real translator).
    assert gen.prometheus_name(sc.METRIC_RENDEZVOUS_DURATION).endswith("_duration_seconds")
    assert gen.prometheus_name(sc.METRIC_AGENT_RESTARTS) == "torchelastic_agent_restarts_total"
    assert gen.prometheus_name(sc.METRIC_GOODPUT) == "torchelastic_goodput_ratio"
    assert gen.prometheus_name(sc.METRIC_RENDEZVOUS_ACTIVE) == "torchelastic_rendezvous_active"


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_layout_and_data_sources() -> None:
    board = dashboard()
    every = board["panels"]
    assert len({p["id"] for p in every}) == len(every)
    for i, a in enumerate(every):
        assert a["gridPos"]["x"] + a["gridPos"]["w"] <= 24, a["title"]
        for b in every[i + 1 :]:
            assert not _overlaps(a["gridPos"], b["gridPos"]), (a["title"], b["title"])
    sources: list[dict[str, Any]] = yaml.safe_load(
        (STACK / "grafana/provisioning/datasources/datasources.yaml").read_text()
    )["datasources"]
    uids = {ds["uid"]: ds["type"] for ds in sources}
    for panel in panels(board):
        assert uids[panel["datasource"]["uid"]] == panel["datasource"]["type"], panel["title"]
    for query in queries(board):
        assert query.datasource in uids.values(), query
        assert query.text, query
    # The timeline row: the run's cycles (Tempo) and each node's state (Prometheus).
    kinds = {p["title"]: p["type"] for p in panels(board)}
    assert kinds["Node states"] == "state-timeline"
    assert kinds["Restart cycles"] == "table"
    assert board["panels"][0] == {
        **board["panels"][0],
        "type": "row",
        "title": "Rendezvous timeline",
    }
    # Provisioned as docker-compose mounts it.
    compose = yaml.safe_load((STACK / "docker-compose.yaml").read_text())
    assert (
        "./grafana/dashboards:/var/lib/grafana/dashboards:ro"
        in compose["services"]["grafana"]["volumes"]
    )
    json.dumps(board)  # plain JSON all the way down


def test_the_json_reads_back_as_grafana_11_4_models() -> None:
    """The SDK's typed models for Grafana 11.4 decode the file and keep every query."""
    generator()
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    board = dashboard()
    again = json.loads(JSONEncoder().encode(Dashboard.from_json(board)))
    assert queries(again) == queries(board)
    assert [p["title"] for p in again["panels"]] == [p["title"] for p in board["panels"]]
