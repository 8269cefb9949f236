"""The dashboards' generator (otel-collector/grafana/generate.py) and its queries, for tests.

The generator lives beside the JSON it writes, outside any package (agents never
import it), so tests load it by path. It needs ``grafana-foundation-sdk`` (the
``test`` extra): where that is missing, a test asking for it skips, or fails under
``make test`` like a missing binary (``TORCHELASTIC_OTEL_REQUIRE``).
"""

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from tests.support.stack import STACK, required
from torchelastic_otel import semconv as sc

GENERATOR = STACK / "grafana" / "generate.py"
DASHBOARD = STACK / "grafana" / "dashboards" / "torchelastic-rendezvous.json"

#: Keys the dashboard queries that a job with a crash and a restart does not
#: produce (no node is lost, no worker reports progress): name-checked against
#: semconv only. Everything else must be emitted by the real job.
NOT_IN_A_CRASH_JOB = {
    "span_keys": {sc.LOST_COUNT, sc.LOST_NODES, sc.INFERRED},
    "record_names": {
        sc.NODE_LOST_EVENT,
        sc.STALL_EVENT,
        sc.PROGRESS_RESUMED_EVENT,
        sc.NODE_LEAVING_EVENT,
    },
    "states": {sc.STATE_LOST},
}


@cache
def _load() -> ModuleType | None:
    if importlib.util.find_spec("grafana_foundation_sdk") is None:
        return None
    spec = importlib.util.spec_from_file_location("torchelastic_grafana_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def generator() -> ModuleType:
    """``otel-collector/grafana/generate.py`` as a module."""
    module = _load()
    if module is not None:
        return module
    message = "grafana-foundation-sdk is not installed: pip install -e '.[test]'"
    if "grafana-foundation-sdk" in required():
        pytest.fail(f"{message} (TORCHELASTIC_OTEL_REQUIRE names it)")
    pytest.skip(message)


def dashboard() -> dict[str, Any]:
    """The committed dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


@dataclass(frozen=True)
class Query:
    """One query of the dashboard: where it is and what it says."""

    panel: str  # the panel's title, or "annotation <name>", "variable <name>"
    ref: str  # the target's refId (or the data link's title)
    datasource: str  # prometheus, loki, tempo
    text: str
    instant: bool = False


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves left out."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(board: dict[str, Any]) -> list[Query]:
    """Every query in ``board``: targets, annotations, variables and data links."""
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            kind = target["datasource"]["type"]
            text = target.get("expr") if kind != "tempo" else target.get("query")
            found.append(
                Query(panel["title"], target["refId"], kind, text, bool(target.get("instant")))
            )
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
            found.extend(explore_queries(panel["title"], link))
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            found.append(
                Query(
                    f"annotation {annotation['name']}",
                    "",
                    annotation["datasource"]["type"],
                    annotation["expr"],
                )
            )
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found.append(
                Query(
                    f"variable {variable['name']}",
                    "",
                    variable["datasource"]["type"],
                    variable["query"],
                )
            )
    return found


def explore_queries(panel: str, link: dict[str, Any]) -> list[Query]:
    """The queries of a data link into Grafana's Explore."""
    from urllib.parse import parse_qs, urlsplit

    url = link["url"]
    if not url.startswith("/explore?"):
        return []
    (text,) = parse_qs(urlsplit(url).query)["panes"]
    found = []
    for pane in json.loads(text).values():
        for q in pane["queries"]:
            kind = q["datasource"]["type"]
            found.append(Query(panel, link["title"], kind, q.get("expr") or q.get("query")))
    return found


# --- names in queries -------------------------------------------------------------------


def traceql_names(query: str) -> tuple[set[str], set[str], set[str]]:
    """A TraceQL query's span-name regexes, span attribute keys and resource attribute keys."""
    names = set(re.findall(r'\bname\s*=~?\s*"([^"]+)"', query))
    span_keys = set(re.findall(r"\bspan\.([A-Za-z0-9_.]+)", query))
    resource_keys = set(re.findall(r"\bresource\.([A-Za-z0-9_.]+)", query))
    return names, span_keys, resource_keys


def logql_labels(expr: str) -> set[str]:
    """Every label a LogQL expression names: matchers, filters and line_format fields."""
    names = set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!=|!~|=)\s*\"", expr))
    names |= set(re.findall(r"\{\{\s*\.([A-Za-z0-9_]+)\s*\}\}", expr))
    return names


def logql_filters(expr: str) -> list[tuple[str, str, str]]:
    """(label, operator, value) of every matcher and label filter of a LogQL expression."""
    return re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|!~|=)\s*\"((?:[^\"\\]|\\.)*)\"", expr)


def promql_metrics(expr: str) -> set[str]:
    """The torchelastic series a PromQL expression reads."""
    return set(re.findall(r"\b(torchelastic_[a-z0-9_]+)\b", expr))


def promql_labels(expr: str) -> set[str]:
    """Labels a PromQL expression groups or matches by, and those its legend would show."""
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    labels |= set(re.findall(r"[{,]\s*([a-z_][a-z0-9_]*)\s*(?:=~|!=|!~|=)", expr))
    labels |= set(re.findall(r"label_values\([^,]*,\s*([a-z_]+)\)", expr))
    return labels


def legend_labels(board: dict[str, Any]) -> set[str]:
    """Labels the Prometheus targets' legends name (``{{label}}``)."""
    return {
        label
        for panel in panels(board)
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "prometheus"
        for label in re.findall(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}", target.get("legendFormat", ""))
    }


__all__ = [
    "DASHBOARD",
    "GENERATOR",
    "NOT_IN_A_CRASH_JOB",
    "Query",
    "dashboard",
    "explore_queries",
    "generator",
    "legend_labels",
    "logql_filters",
    "logql_labels",
    "panels",
    "promql_labels",
    "promql_metrics",
    "queries",
    "traceql_names",
]
