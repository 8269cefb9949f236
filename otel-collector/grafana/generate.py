"""Generate the Grafana dashboard of the compose stack from the package's vocabulary.

Every span name, attribute key and metric name in a query comes from
``torchelastic_otel.semconv``; Prometheus names and Loki labels are derived from
them here, as the backends derive them. The dashboard is built with Grafana's
own typed builders (``grafana-foundation-sdk``, the build for Grafana 11.4, the
version docker-compose.yaml pins), a dev-only dependency (``pip install -e
'.[test]'``): agents never import this file.

Run it after changing a name or a panel, and commit the JSON it writes
(docker-compose.yaml provisions ``dashboards/``; ``tests/unit/test_dashboards.py``
fails while the committed file differs from what this produces)::

    python otel-collector/grafana/generate.py          # rewrite dashboards/*.json
    python otel-collector/grafana/generate.py --check  # exit 1 if they are stale

``tests/e2e/test_dashboard_real_job.py`` runs every PromQL query of the dashboard
and of ``prometheus/alerts.yaml`` against a Prometheus fed by a real job through
the real collector, and holds every TraceQL and LogQL name against what that job
emitted.
"""

import argparse
import json
import re
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import logs as glogs
from grafana_foundation_sdk.builders import loki as gloki
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import stat as gstat
from grafana_foundation_sdk.builders import statetimeline as gstate
from grafana_foundation_sdk.builders import table as gtable
from grafana_foundation_sdk.builders import tempo as gtempo
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as mcommon
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models.tempo import SearchTableType

from torchelastic_otel import semconv as sc

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"

# The data sources' uids (provisioning/datasources/datasources.yaml).
PROMETHEUS: Final = md.DataSourceRef(type_val="prometheus", uid="prometheus")
LOKI: Final = md.DataSourceRef(type_val="loki", uid="loki")
TEMPO: Final = md.DataSourceRef(type_val="tempo", uid="tempo")

RUN: Final = "$run_id"
"""The dashboard's run variable, a regex (several runs, or ``.+`` for all)."""
RATE: Final = "$__rate_interval"


# --- names as the backends derive them ----------------------------------------------


@dataclass(frozen=True)
class Instrument:
    """How the package records a metric: ``counter``, ``gauge`` or ``histogram``, and its unit."""

    kind: str
    unit: str


#: Every metric semconv declares, as the agent records it (otel/_metrics.py; the
#: progress, stall, goodput and lost-node metrics as that work records them).
#: tests/e2e/test_dashboard_real_job.py checks this against what a real job sends.
INSTRUMENTS: Final[dict[str, Instrument]] = {
    sc.METRIC_RENDEZVOUS_DURATION: Instrument("histogram", "s"),
    sc.METRIC_RENDEZVOUS_ROUNDS: Instrument("counter", "{round}"),
    sc.METRIC_RENDEZVOUS_FAILURES: Instrument("counter", "{failure}"),
    sc.METRIC_RENDEZVOUS_ACTIVE: Instrument("gauge", "{node}"),
    sc.METRIC_RENDEZVOUS_HEARTBEATS: Instrument("counter", "{heartbeat}"),
    sc.METRIC_AGENT_RESTARTS: Instrument("counter", "{restart}"),
    sc.METRIC_RESTART_REMAINING: Instrument("gauge", "{restart}"),
    sc.METRIC_RESTART_LIMIT: Instrument("gauge", "{restart}"),
    sc.METRIC_WORKER_FAILURES: Instrument("counter", "{failure}"),
    sc.METRIC_WORKER_STARTUP: Instrument("histogram", "s"),
    sc.METRIC_NODES_LOST: Instrument("counter", "{node}"),
    sc.METRIC_PROGRESS_STEP: Instrument("gauge", "{step}"),
    sc.METRIC_PROGRESS_IDLE: Instrument("gauge", "s"),
    sc.METRIC_WORKERS_STALLED: Instrument("gauge", "{worker}"),
    sc.METRIC_GOODPUT: Instrument("gauge", "1"),
}

# otlptranslator's unit words (github.com/prometheus/otlptranslator unit_namer.go),
# for the units we use.
_UNIT_WORDS: Final = {"": "", "s": "seconds", "ms": "milliseconds", "1": ""}


def prometheus_name(name: str) -> str:
    """The series name Prometheus 3's OTLP receiver stores metric ``name`` under.

    Its default translation (``UnderscoreEscapingWithSuffixes``, the one
    otel-collector/prometheus/prometheus.yml sets, and the one the collector's
    remote-write exporter uses): dots become underscores, the unit becomes a suffix
    (``{...}`` annotations are dropped), gauges in ``1`` get ``_ratio`` and counters
    ``_total``. A histogram's series add ``_bucket``, ``_sum`` and ``_count``.

    Example::

        >>> prometheus_name("torchelastic.rendezvous.duration")
        'torchelastic_rendezvous_duration_seconds'
        >>> prometheus_name("torchelastic.goodput")
        'torchelastic_goodput_ratio'
    """
    instrument = INSTRUMENTS[name]
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", name) if t]
    unit = re.sub(r"\{[^}]*\}", "", instrument.unit)
    if unit not in _UNIT_WORDS:
        raise ValueError(f"{name}: no Prometheus suffix known for unit {instrument.unit!r}")
    if _UNIT_WORDS[unit] and _UNIT_WORDS[unit] not in tokens:
        tokens.append(_UNIT_WORDS[unit])
    if instrument.kind == "gauge" and unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    if instrument.kind == "counter":
        tokens.append("total")
    return "_".join(tokens)


def prometheus_label(attribute: str) -> str:
    """A data point attribute's (or promoted resource attribute's) Prometheus label.

    Example::

        >>> prometheus_label(sc.LOST_REASON)
        'torchelastic_lost_reason'
    """
    return re.sub(r"[^A-Za-z0-9_]", "_", attribute)


def loki_label(attribute: str) -> str:
    """A record attribute as Loki's OTLP endpoint names it (structured metadata).

    Example::

        >>> loki_label(sc.GLOBAL_RANK)
        'torchelastic_global_rank'
    """
    return attribute.replace(".", "_")


# --- query pieces ---------------------------------------------------------------------------

NODE: Final = "instance, host_name"
"""A node in PromQL: the agent (``service.instance.id``) and its host (promoted)."""
NODE_LEGEND: Final = "{{host_name}} {{instance}}"
RUN_FILTER: Final = f'{sc.RUN_ID}=~"{RUN}"'


def series(metric: str, suffix: str = "") -> str:
    """``<prometheus name><suffix>{run_id=~"$run_id"}``."""
    return f"{prometheus_name(metric)}{suffix}{{{RUN_FILTER}}}"


def legend(label: str) -> str:
    """A legend placeholder for the Prometheus label of attribute ``label``."""
    return "{{" + prometheus_label(label) + "}}"


def increase_or_new(metric: str, by: str, window: str, suffix: str = "") -> str:
    """How much a counter grew in ``window``, counting a series that starts inside it.

    A counter with a per-failure attribute (``error.type``, ``torchelastic.lost.reason``)
    has no series until its first failure and starts at 1, and a histogram's series
    start at their first observation: ``increase()`` needs two samples and misses
    that first step (a run's first rendezvous, its first failure). Added here: the
    first value of every series that did not exist ``window`` ago (PromQL's ``or``
    keeps the left side's groups).
    """
    s = series(metric, suffix)
    grew = f"sum by ({by}) (increase({s}[{window}]))"
    born = f"sum by ({by}) (min_over_time({s}[{window}]) unless {s} offset {window})"
    return f"(({grew} + {born}) or {grew} or {born})"


def loki_selector(*filters: str) -> str:
    """The run's stream, then ``| filter`` for each filter."""
    return " | ".join([f'{{{sc.RUN_ID}=~"{RUN}"}}', *filters])


def traceql_name(span_prefix: str, rest: str) -> str:
    """A TraceQL regex for span names ``<span_prefix> <rest>`` (the prefix escaped)."""
    return re.escape(span_prefix).replace("\\.", "[.]") + " " + rest


def explore_url(pane: str, datasource: md.DataSourceRef, query: dict[str, str]) -> str:
    """A Grafana Explore link (one pane) for a data link; ``${...}`` stay for Grafana."""
    panes = {
        pane: {
            "datasource": datasource.uid,
            "queries": [
                {"refId": "A", "datasource": datasource.to_json(), **query},
            ],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    text = json.dumps(panes, separators=(",", ":"), sort_keys=True)
    return "/explore?schemaVersion=1&orgId=1&panes=" + urllib.parse.quote(text, safe="${}._")


# --- the node states (the timeline) -------------------------------------------------------

#: Values of the node-state timeline, worst last: a node's row shows the worst
#: state it was in during each step.
STATE_RUNNING: Final = 0
STATE_RENDEZVOUS: Final = 1
STATE_STALLED: Final = 2
STATE_FAILED: Final = 3
STATE_LOST: Final = 4
STATES: Final = {
    STATE_RUNNING: ("running", "green"),
    STATE_RENDEZVOUS: ("in rendezvous", "blue"),
    STATE_STALLED: ("stalled", "orange"),
    STATE_FAILED: ("worker failed", "red"),
    STATE_LOST: ("node lost", "purple"),
}


def _as(value: int, expr: str) -> str:
    return f"({expr}) * 0 + {value}"


def node_state_query() -> str:
    """Each node's state as a number, the worst first (PromQL ``or`` keeps the left)."""
    failed = increase_or_new(sc.METRIC_WORKER_FAILURES, NODE, RATE)
    stalled = f"max by ({NODE}) ({series(sc.METRIC_WORKERS_STALLED)})"
    waiting = f"max by ({NODE}) ({series(sc.METRIC_RENDEZVOUS_ACTIVE)})"
    alive = f"max by ({NODE}) ({series(sc.METRIC_RESTART_LIMIT)})"
    return "\n  or ".join(
        [
            _as(STATE_FAILED, f"{failed} > 0"),
            _as(STATE_STALLED, f"{stalled} > 0"),
            _as(STATE_RENDEZVOUS, f"{waiting} > 0"),
            _as(STATE_RUNNING, alive),
        ]
    )


def lost_state_query() -> str:
    """A row per reason while the survivors report lost nodes."""
    lost = increase_or_new(sc.METRIC_NODES_LOST, prometheus_label(sc.LOST_REASON), RATE)
    return _as(STATE_LOST, f"{lost} > 0")


# --- panels -------------------------------------------------------------------------------

Placed = tuple[Any, int, int, int, int]
"""A panel builder and where it goes in its row: x, y (from the row's top), width, height."""


def _prom(expr: str, ref: str = "A", legend: str | None = None, instant: bool = False) -> Any:
    query = gprom.Dataquery().expr(expr).ref_id(ref).datasource(PROMETHEUS)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def _loki(expr: str) -> gloki.Dataquery:
    return gloki.Dataquery().expr(expr).ref_id("A").datasource(LOKI)


def _traceql(query: str) -> gtempo.TempoQuery:
    return (
        gtempo.TempoQuery()
        .ref_id("A")
        .datasource(TEMPO)
        .query_type("traceql")
        .table_type(SearchTableType.SPANS)
        .limit(100)
        .spss(100)
        .query(query)
    )


def _stat(title: str, description: str, *targets: Any) -> gstat.Panel:
    panel = (
        gstat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit("short")
        .color_mode(mcommon.BigValueColorMode.VALUE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _logs(title: str, description: str, expr: str) -> glogs.Panel:
    return (
        glogs.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .with_target(_loki(expr))
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(mcommon.LogsSortOrder.ASCENDING)
    )


def _timeseries(title: str, description: str, unit: str, *targets: Any) -> gts.Panel:
    panel = gts.Panel().title(title).description(description).datasource(PROMETHEUS).unit(unit)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _bars(panel: gts.Panel, stacked: bool = False) -> gts.Panel:
    panel = panel.draw_style(mcommon.GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(mcommon.StackingMode.NORMAL))
    return panel


def timeline_row() -> list[Placed]:
    """The run's cycles (Tempo) and each node's state over time (Prometheus)."""
    states = md.ValueMap(
        options={
            str(value): md.ValueMappingResult(text=text, color=color, index=value)
            for value, (text, color) in STATES.items()
        }
    )
    node_states = (
        gstate.Panel()
        .title("Node states")
        .description(
            "Each node (agent) over time: running workers, waiting in a rendezvous round "
            f"({prometheus_name(sc.METRIC_RENDEZVOUS_ACTIVE)}), workers stalled "
            f"({prometheus_name(sc.METRIC_WORKERS_STALLED)}), a worker failed "
            f"({prometheus_name(sc.METRIC_WORKER_FAILURES)}), and nodes the survivors "
            f"reported lost ({prometheus_name(sc.METRIC_NODES_LOST)}, one row per reason). "
            "Sampled at each metric export (OTEL_METRIC_EXPORT_INTERVAL, 60 s by default): "
            "a short rendezvous can fall between two samples. A row ends when the node's "
            "agent stops exporting (a rate interval later)."
        )
        .datasource(PROMETHEUS)
        .with_target(_prom(node_state_query(), "A", NODE_LEGEND))
        .with_target(_prom(lost_state_query(), "B", "lost: " + legend(sc.LOST_REASON)))
        .mappings([states])
        .color_scheme(gd.FieldColor().mode(md.FieldColorModeId.THRESHOLDS))
        .show_value(mcommon.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
    )
    cycle = traceql_name(sc.CYCLE_SPAN, "[0-9]+")
    cycles = (
        gtable.Panel()
        .title("Restart cycles")
        .description(
            f"One row per cycle of the run: the root span {sc.CYCLE_SPAN} <round> of the "
            "cycle's trace, how the cycle ended, its nodes and the nodes lost since the "
            "cycle before. Click a row for the cycle's trace (every node's part, its "
            "rendezvous time and its workers) or the failure's log lines."
        )
        .datasource(TEMPO)
        .with_target(
            _traceql(
                f'{{ name =~ "{cycle}" && span.{sc.RUN_ID} =~ "{RUN}" }}'
                f" | select(span.{sc.ROUND}, span.{sc.OUTCOME}, span.{sc.NODES},"
                f" span.{sc.WORKERS}, span.{sc.LOST_COUNT}, span.{sc.LOST_NODES})"
            )
        )
        .data_links(
            [
                gd.DashboardLink("Open the cycle's trace").url(
                    explore_url(
                        "trace",
                        TEMPO,
                        {"queryType": "traceql", "query": "${__data.fields.traceIdHidden}"},
                    )
                ),
                gd.DashboardLink("Failure log lines of this cycle").url(
                    explore_url(
                        "logs",
                        LOKI,
                        {
                            # Any run: the trace id alone picks the cycle.
                            "expr": f'{{{sc.RUN_ID}=~".+"}}'
                            ' | trace_id="${__data.fields.traceIdHidden}"'
                            f' | {sc.NODE_STATE}=~"{sc.STATE_FAILED}|{sc.STATE_LOST}"'
                        },
                    )
                ),
            ]
        )
    )
    part = traceql_name(sc.CYCLE_NODE_SPAN, ".+")
    parts = (
        gtable.Panel()
        .title("Each node's part in each cycle")
        .description(
            f"The {sc.CYCLE_NODE_SPAN} <host> spans: per cycle (round) and node rank, how "
            "the cycle ended on that node, how long its rendezvous took, and whether a "
            "survivor wrote the part for a node that was lost (inferred)."
        )
        .datasource(TEMPO)
        .with_target(
            _traceql(
                f'{{ name =~ "{part}" && span.{sc.RUN_ID} =~ "{RUN}" }}'
                f" | select(span.{sc.ROUND}, span.{sc.RANK}, span.{sc.OUTCOME},"
                f" span.{sc.RENDEZVOUS_DURATION_MS}, span.{sc.INFERRED})"
            )
        )
    )
    lost_and_stalled = _timeseries(
        "Lost nodes and stalled workers",
        "Nodes the survivors found gone, by how they learned it "
        f"({prometheus_label(sc.LOST_REASON)}), and each node's workers that made no "
        "progress for the stall timeout.",
        "short",
        _prom(
            increase_or_new(sc.METRIC_NODES_LOST, prometheus_label(sc.LOST_REASON), RATE),
            "A",
            "lost: " + legend(sc.LOST_REASON),
        ),
        _prom(
            f"max by ({NODE}) ({series(sc.METRIC_WORKERS_STALLED)})",
            "B",
            "stalled: " + NODE_LEGEND,
        ),
    )
    records = (sc.NODE_LOST_EVENT, sc.STALL_EVENT, sc.PROGRESS_RESUMED_EVENT, sc.NODE_LEAVING_EVENT)
    lost_and_stalled_logs = _logs(
        "Lost nodes and stalls (records)",
        "The survivors' record of each lost node (which node, its last cycle, the "
        "reason), the stall records (which ranks, since when) and nodes told to leave.",
        loki_selector(f'{loki_label(sc.NAME)}=~"{"|".join(re.escape(n) for n in records)}"'),
    )
    return [
        (node_states, 0, 0, 24, 8),
        (cycles, 0, 8, 12, 9),
        (parts, 12, 8, 12, 9),
        (lost_and_stalled, 0, 17, 12, 8),
        (lost_and_stalled_logs, 12, 17, 12, 8),
    ]


def overview_row() -> list[Placed]:
    """Rounds, durations, restarts and failures (Prometheus) and the failures' records (Loki)."""
    rounds = _bars(
        _timeseries(
            "Rendezvous rounds per node",
            f"Rounds each node went through ({prometheus_name(sc.METRIC_RENDEZVOUS_ROUNDS)}): "
            "one per start and one per restart.",
            "short",
            _prom(
                f"sum by ({NODE}) (increase({series(sc.METRIC_RENDEZVOUS_ROUNDS)}[{RATE}]))",
                legend=NODE_LEGEND,
            ),
        )
    )
    duration = prometheus_name(sc.METRIC_RENDEZVOUS_DURATION)
    durations = _timeseries(
        "Rendezvous duration per node (p90)",
        f"How long nodes waited in rendezvous ({duration}). A node far below the "
        "others joined last: the others waited for it.",
        "s",
        _prom(
            "histogram_quantile(0.9, "
            + increase_or_new(sc.METRIC_RENDEZVOUS_DURATION, f"{NODE}, le", RATE, "_bucket")
            + ")",
            legend=NODE_LEGEND,
        ),
    )
    restarts = _stat(
        "Restarts",
        "Group restarts of the run in the time range: every node counts the same "
        "restart, so this is the max over nodes, not the sum.",
        _prom(
            f"max(increase({series(sc.METRIC_AGENT_RESTARTS)}[$__range]))",
            instant=True,
        ),
    )
    failures = _stat(
        "Worker failures",
        "Worker processes that failed in the time range, all nodes "
        f"({prometheus_name(sc.METRIC_WORKER_FAILURES)}).",
        _prom(increase_or_new(sc.METRIC_WORKER_FAILURES, sc.RUN_ID, "$__range"), instant=True),
    )
    budget = _stat(
        "Restarts left",
        "The fewest restarts any node has left "
        f"({prometheus_name(sc.METRIC_RESTART_REMAINING)}) out of --max-restarts "
        f"({prometheus_name(sc.METRIC_RESTART_LIMIT)}).",
        _prom(f"min({series(sc.METRIC_RESTART_REMAINING)})", "A", "left", instant=True),
        _prom(f"max({series(sc.METRIC_RESTART_LIMIT)})", "B", "limit", instant=True),
    )
    waiting = _stat(
        "Nodes in rendezvous now",
        "Nodes waiting in a rendezvous round right now "
        f"({prometheus_name(sc.METRIC_RENDEZVOUS_ACTIVE)}). Non-zero for long: the run "
        "is not training.",
        _prom(f"sum({series(sc.METRIC_RENDEZVOUS_ACTIVE)})", instant=True),
    )
    failure_records = _logs(
        "Failures with their error traces",
        f"Every {sc.STATE_FAILED} record; expand one for "
        f"{loki_label(sc.EXCEPTION_STACKTRACE)} and all its attributes, or follow its "
        "trace_id to the cycle's trace.",
        loki_selector(
            f'{sc.NODE_STATE}="{sc.STATE_FAILED}"',
            f'{sc.RANK}=~"$rank"',
            'line_format "rank {{.'
            + sc.RANK
            + "}} worker {{."
            + loki_label(sc.GLOBAL_RANK)
            + "}}: {{."
            + loki_label(sc.EXCEPTION_TYPE)
            + "}}: {{."
            + loki_label(sc.EXCEPTION_MESSAGE)
            + '}}"',
        ),
    )
    by_type = _bars(
        _timeseries(
            "Failures by type",
            "Worker failures by error_type (exception type, signal name or "
            "exit_code_<n>) and rendezvous failures by error type.",
            "short",
            _prom(
                increase_or_new(sc.METRIC_WORKER_FAILURES, prometheus_label(sc.ERROR_TYPE), RATE),
                "A",
                "worker " + legend(sc.ERROR_TYPE),
            ),
            _prom(
                increase_or_new(
                    sc.METRIC_RENDEZVOUS_FAILURES, prometheus_label(sc.ERROR_TYPE), RATE
                ),
                "B",
                "rendezvous " + legend(sc.ERROR_TYPE),
            ),
        ),
        stacked=True,
    )
    startup = _timeseries(
        "Worker start-up and keep-alives",
        "Time from rendezvous done to workers started (p90, "
        f"{prometheus_name(sc.METRIC_WORKER_STARTUP)}) and the rendezvous keep-alive "
        f"heartbeat rate per node ({prometheus_name(sc.METRIC_RENDEZVOUS_HEARTBEATS)}).",
        "short",
        _prom(
            "histogram_quantile(0.9, "
            + increase_or_new(sc.METRIC_WORKER_STARTUP, "le", RATE, "_bucket")
            + ")",
            "A",
            "start-up p90 (s)",
        ),
        _prom(
            f"sum by ({NODE}) (rate({series(sc.METRIC_RENDEZVOUS_HEARTBEATS)}[{RATE}]))",
            "B",
            "heartbeats/s " + NODE_LEGEND,
        ),
    )
    return [
        (rounds, 0, 0, 12, 8),
        (durations, 12, 0, 12, 8),
        (restarts, 0, 8, 4, 5),
        (failures, 4, 8, 4, 5),
        (failure_records, 8, 8, 16, 10),
        (budget, 0, 13, 4, 5),
        (waiting, 4, 13, 4, 5),
        (by_type, 0, 18, 12, 8),
        (startup, 12, 18, 12, 8),
    ]


def progress_row() -> list[Placed]:
    """Training progress and goodput, from the workers' progress reports."""
    goodput = _timeseries(
        "Goodput per node",
        "The share of each node's wall time in the run in which its workers made "
        f"progress ({prometheus_name(sc.METRIC_GOODPUT)}); rendezvous, restarts and "
        "stalls are the rest.",
        "percentunit",
        _prom(f"max by ({NODE}) ({series(sc.METRIC_GOODPUT)})", legend=NODE_LEGEND),
    ).min(0)
    step = _timeseries(
        "Training step per worker",
        f"Each worker's last reported step ({prometheus_name(sc.METRIC_PROGRESS_STEP)}); a "
        "flat line while the others climb is a stalled worker.",
        "short",
        _prom(
            f"max by ({NODE}, {prometheus_label(sc.LOCAL_RANK)}) "
            f"({series(sc.METRIC_PROGRESS_STEP)})",
            legend=NODE_LEGEND + " local rank " + legend(sc.LOCAL_RANK),
        ),
    )
    idle = _timeseries(
        "Seconds since each worker's last step",
        f"{prometheus_name(sc.METRIC_PROGRESS_IDLE)}: past the stall timeout the "
        "worker counts as stalled.",
        "s",
        _prom(
            f"max by ({NODE}, {prometheus_label(sc.LOCAL_RANK)}) "
            f"({series(sc.METRIC_PROGRESS_IDLE)})",
            legend=NODE_LEGEND + " local rank " + legend(sc.LOCAL_RANK),
        ),
    )
    events = _logs(
        "All events",
        "Every record of the run in time order, agents and rendezvous.",
        loki_selector(
            f'{sc.RANK}=~"$rank"',
            'line_format "[rank {{.'
            + sc.RANK
            + "}}] {{."
            + sc.NODE_STATE
            + "}} {{."
            + loki_label(sc.NAME)
            + "}} {{."
            + loki_label(sc.MESSAGE)
            + '}}"',
        ),
    )
    return [
        (goodput, 0, 0, 8, 8),
        (step, 8, 0, 8, 8),
        (idle, 16, 0, 8, 8),
        (events, 0, 8, 24, 10),
    ]


def rendezvous_dashboard() -> md.Dashboard:
    """The "torchelastic rendezvous" dashboard."""
    run = (
        gd.QueryVariable(sc.RUN_ID)
        .label(sc.RUN_ID)
        .description("The run (--rdzv-id); several, or All.")
        .datasource(PROMETHEUS)
        # The waiting gauge: every node has it from its first rendezvous on.
        .query(f"label_values({prometheus_name(sc.METRIC_RENDEZVOUS_ACTIVE)}, {sc.RUN_ID})")
        .refresh(md.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(md.VariableSort.ALPHABETICAL_DESC)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .current(md.VariableOption(selected=True, text="All", value="$__all"))
    )
    rank = (
        gd.TextBoxVariable(sc.RANK)
        .label(sc.RANK)
        .description(
            "Regex on the records' rank (structured metadata in Loki, not a label: see loki.yaml)."
        )
        .default_value(".+")
        .current(md.VariableOption(selected=True, text=".+", value=".+"))
    )
    builder = (
        gd.Dashboard("torchelastic rendezvous")
        .uid("torchelastic-rendezvous")
        .tags(["torchelastic", "pytorch"])
        .description(
            "A torchrun job's restart cycles and nodes over time (generated by "
            "otel-collector/grafana/generate.py from torchelastic_otel.semconv)."
        )
        .timezone("browser")
        .editable()
        .refresh("10s")
        .time("now-1h", "now")
        .with_variable(run)
        .with_variable(rank)
        .annotation(
            gd.AnnotationQuery()
            .name("Failures")
            .datasource(LOKI)
            .enable(True)
            .icon_color("red")
            .expr(loki_selector(f'{sc.NODE_STATE}="{sc.STATE_FAILED}"'))
        )
        .annotation(
            gd.AnnotationQuery()
            .name("Lost nodes")
            .datasource(LOKI)
            .enable(True)
            .icon_color("purple")
            .expr(loki_selector(f'{sc.NODE_STATE}="{sc.STATE_LOST}"'))
        )
    )
    panel_id, y = 0, 0
    for title, panels in (
        ("Rendezvous timeline", timeline_row()),
        ("Rendezvous and failures", overview_row()),
        ("Progress and events", progress_row()),
    ):
        panel_id += 1
        builder = builder.with_row(gd.Row(title).id(panel_id).grid_pos(md.GridPos(1, 24, 0, y)))
        for panel, x, dy, w, h in panels:
            panel_id += 1
            builder = builder.with_panel(
                panel.id(panel_id).grid_pos(md.GridPos(h, w, x, y + 1 + dy))
            )
        y += 1 + max(dy + h for _, _, dy, _, h in panels)
    return builder.build()


#: File name -> the dashboard written there.
DASHBOARD_FILES: Final = {"torchelastic-rendezvous.json": rendezvous_dashboard}


def render(dashboard: md.Dashboard) -> str:
    """The dashboard as the JSON file Grafana provisions (keys sorted, 2-space indent)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(dashboard) + "\n"


def generated() -> dict[Path, str]:
    """Every dashboard file's path and the text it should have."""
    return {DASHBOARDS / name: render(build()) for name, build in DASHBOARD_FILES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards (or, with ``--check``, say which are stale)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
            print(f"wrote {path}")
    if args.check and stale:
        print("stale (run otel-collector/grafana/generate.py):", *map(str, stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
