"""Pinned versions of the stack, and the upstream source behind each setting we use.

Every backend setting in otel-collector/ was read in the upstream source of the
version we pin (the repositories at those tags, or the Go module at that
version). ``SETTINGS`` records where. A setting is tied to the version it was
checked at: bumping an image tag fails ``test_settings_checked_at_the_pinned_versions``
until someone re-reads the new tag's source and updates the table. Settings that
need a minimum version (``since``) are also checked against it, so pinning an
older image fails too.

Grafana is the exception: its repository is too large to fetch here, so its
keys were read in the file the table names (the code index's copy, not the tag),
and only the keys stable across 10.x-13.x are used.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "otel-collector"


def _yaml(name: str) -> Any:
    return yaml.safe_load((STACK / name).read_text())


def _versions_env() -> dict[str, str]:
    pairs = re.findall(r"^([A-Z0-9_]+)=(\S+)$", (STACK / "versions.env").read_text(), re.M)
    return dict(pairs)


def _tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.lstrip("v").split("."))


def pinned() -> dict[str, str]:
    """Component -> the version this repository runs (image tags, Go modules)."""
    images = {
        name: svc["image"].rsplit(":", 1)[1].lstrip("v")
        for name, svc in _yaml("docker-compose.yaml")["services"].items()
    }
    env = _versions_env()
    assert images["jaeger"] == env["JAEGER_V2_VERSION"]
    assert images["prometheus"] == env["PROMETHEUS_RELEASE"]
    assert images["collector"] == env["OTELCOL_VERSION"].lstrip("v")
    return images


@dataclass(frozen=True)
class Setting:
    """One setting we use, and where upstream source says what it does."""

    component: str  # a compose service name
    setting: str  # where it is in our files
    checked_at: str  # the version whose source was read
    source: str  # repository@tag:path:lines (what the line says)
    since: str | None = None  # first version that accepts it, where we checked that


SETTINGS = [
    # --- Loki (grafana/loki) ---
    Setting(
        "loki",
        "loki.yaml limits_config.otlp_config.log_attributes[action=index_label]",
        "3.7.6",
        "grafana/loki@v3.3.2:pkg/loghttp/push/otlp_config.go:122-127 (Validate rejects "
        "index_label in log_attributes); the check is gone from v3.5.0 on "
        "(commit 4d1f5a774d, #16673; v3.7.6: Validate checks scope_attributes only, :118)",
        since="3.5.0",
    ),
    Setting(
        "loki",
        "loki.yaml limits_config.otlp_config.resource_attributes.ignore_defaults",
        "3.7.6",
        "grafana/loki@v3.7.6:pkg/loghttp/push/otlp_config.go:55-74 (default index labels "
        "include service.instance.id, k8s.pod.name), :192-193 (ignore_defaults, "
        "attributes_config)",
    ),
    Setting(
        "loki",
        "loki.yaml compactor.retention_enabled + delete_request_store",
        "3.7.6",
        "grafana/loki@v3.7.6:pkg/compactor/config.go:24,29 (keys), :107-110 (retention "
        "without delete_request_store is a start-up error)",
    ),
    Setting(
        "loki",
        "loki.yaml auth_enabled: false -> tenant 'fake'",
        "3.7.6",
        "grafana/loki@v3.7.6:pkg/loki/modules.go:211-213 (InjectOrgID 'fake' when auth is "
        "off), pkg/loki/loki.go:86",
    ),
    Setting(
        "loki",
        "loki.yaml limits_config: allow_structured_metadata, retention_period, "
        "ingestion_rate_mb, ingestion_burst_size_mb, shard_streams.enabled; "
        "max_global_streams_per_user default 5000",
        "3.7.6",
        "grafana/loki@v3.7.6:pkg/validation/limits.go:95-96,215,225,251,254,359; "
        "pkg/distributor/shardstreams/config.go:11",
    ),
    # --- Tempo (grafana/tempo) ---
    Setting(
        "tempo",
        "tempo.yaml: no overrides (max_bytes_per_trace stays at its default)",
        "2.6.1",
        "grafana/tempo@v2.6.1:modules/overrides/config.go:175 (Global.MaxBytesPerTrace), "
        ":201 (Config.Defaults), :265 (default 5,000,000)",
    ),
    Setting(
        "tempo",
        "tempo.yaml stream_over_http_enabled, distributor.receivers, "
        "ingester.max_block_duration, compactor.compaction.block_retention, storage.trace",
        "2.6.1",
        "grafana/tempo@v2.6.1:cmd/tempo/app/config.go:38,43-54; "
        "modules/ingester/config.go:25; tempodb/config.go:46,64-65,133",
    ),
    # --- Prometheus (prometheus/prometheus, Go module v0.316.0 = 3.16.0) ---
    Setting(
        "prometheus",
        "prometheus.yml otlp.translation_strategy, otlp.promote_resource_attributes",
        "3.16.0",
        "github.com/prometheus/prometheus@v0.316.0:config/config.go:1794-1797, "
        ":1813-1838 (validation); otlptranslator@v1.0.0:strategy.go:34",
    ),
    Setting(
        "prometheus",
        "prometheus.yml storage.tsdb.out_of_order_time_window; --web.enable-otlp-receiver",
        "3.16.0",
        "github.com/prometheus/prometheus@v0.316.0:config/config.go:1193; "
        "cmd/prometheus/main.go:491",
    ),
    # --- Jaeger v2 (github.com/jaegertracing/jaeger v1.75.0 = 2.12.0) ---
    Setting(
        "jaeger",
        "jaeger.yaml extensions jaeger_storage/jaeger_query/healthcheckv2, "
        "jaeger_storage_exporter, memory backend",
        "2.12.0",
        "github.com/jaegertracing/jaeger@v1.75.0:cmd/jaeger/config.yaml; "
        "cmd/jaeger/internal/components.go:71,77-78,109; "
        "cmd/jaeger/internal/extension/jaegerquery/config.go:17-28",
    ),
    Setting(
        "jaeger",
        "jaeger.yaml jaeger_query.http / .grpc endpoints",
        "2.12.0",
        "github.com/jaegertracing/jaeger@v1.75.0:cmd/query/app/flags.go:209-213 "
        "(ports/ports.go:29-31: 16685 / 16686, flags_test.go:220-221)",
    ),
    Setting(
        "jaeger",
        "docker-compose.yaml jaeger healthcheck GET :13133/status (healthcheckv2, use_v2)",
        "2.12.0",
        "jaeger@v1.75.0 go.mod requires contrib v0.139.0: "
        "internal/healthcheck@v0.139.0:config.go:131 (status path /status)",
    ),
    # --- the collector (contrib distribution in compose, our build for tests) ---
    Setting(
        "collector",
        "component names otlp_grpc, otlp_http, load_balancing, k8s_attributes "
        "(old names are deprecated aliases)",
        "0.161.0",
        "go.opentelemetry.io/collector/exporter/otlpexporter@v0.161.0 and "
        "otlphttpexporter@v0.161.0: internal/metadata/generated_status.go:12-13; contrib "
        "loadbalancingexporter@v0.161.0, k8sattributesprocessor@v1.0.0: same file",
    ),
    # --- Grafana ---
    Setting(
        "grafana",
        "datasources.yaml tracesToLogsV2 {datasourceUid, tags, spanStart/EndTimeShift, "
        "filterByTraceID/SpanID, customQuery, query}; nodeGraph.enabled",
        "11.4.0",
        "grafana/grafana (code index copy, not the tag): packages/grafana-o11y-ds-frontend/"
        "src/TraceToLogs/TraceToLogsSettings.tsx (TraceToLogsOptionsV2)",
    ),
]


def test_versions_env_matches_the_builder_manifest() -> None:
    env = _versions_env()
    manifest = (STACK / "builder-config.yaml").read_text()
    modules = re.findall(r"- gomod: (\S+) (v\S+)", manifest)
    assert modules
    for module, version in modules:
        if module.startswith("go.opentelemetry.io/collector/confmap/provider/"):
            assert version == "v1.67.0", module  # the stable modules of that release
        elif module.endswith("/k8sattributesprocessor"):
            assert version == "v1.0.0", module  # stable: v1.0.0 is contrib v0.161.0
        else:
            assert version == env["OTELCOL_VERSION"], module
    # Only components the configs use (plus what they need, and the remote-write
    # exporter tests/e2e/test_dashboard_real_job.py feeds Debian's Prometheus with);
    # nothing else.
    names = {m.rsplit("/", 1)[1] for m, _ in modules}
    assert names == {
        "otlpreceiver",
        "memorylimiterprocessor",
        "batchprocessor",
        "resourceprocessor",
        "k8sattributesprocessor",
        "tailsamplingprocessor",
        "otlpexporter",
        "otlphttpexporter",
        "debugexporter",
        "loadbalancingexporter",
        "prometheusremotewriteexporter",
        "healthcheckextension",
        "envprovider",
        "fileprovider",
        "yamlprovider",
    }


def test_compose_and_kubernetes_run_the_pinned_releases() -> None:
    versions = pinned()
    for path in (STACK / "kubernetes").glob("collector-*.yaml"):
        images = re.findall(r"image: (\S+)", path.read_text())
        assert images and all(i.endswith(":" + versions["collector"]) for i in images), path


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s.component}: {s.setting[:40]}")
def test_settings_checked_at_the_pinned_versions(setting: Setting) -> None:
    running = pinned()[setting.component]
    assert running == setting.checked_at, (
        f"{setting.component} is pinned at {running} but {setting.setting!r} was checked at "
        f"{setting.checked_at} ({setting.source}): read that source at the new tag, then "
        "update SETTINGS"
    )
    if setting.since:
        assert _tuple(running) >= _tuple(setting.since), setting


def test_loki_pin_accepts_log_attribute_index_labels() -> None:
    """The defect that started this: Loki 3.3.2 refused loki.yaml at start-up."""
    otlp = _yaml("loki.yaml")["limits_config"]["otlp_config"]
    uses = any(b["action"] == "index_label" for b in otlp.get("log_attributes", []))
    assert uses
    (rule,) = [s for s in SETTINGS if "log_attributes" in s.setting]
    assert rule.since
    assert _tuple(pinned()["loki"]) >= _tuple(rule.since)


def test_tempo_overrides_use_the_format_of_the_pinned_tempo() -> None:
    """Tempo >= 2.3 reads `overrides.defaults.<group>`; the flat legacy keys are another format.

    None are set today (a trace fits Tempo's defaults); any added must use that format.
    """
    overrides = _yaml("tempo.yaml").get("overrides") or {"defaults": {}}
    assert set(overrides) == {"defaults"}
    assert set(overrides["defaults"]) <= {
        "ingestion",
        "read",
        "compaction",
        "metrics_generator",
        "forwarders",
        "global",
        "storage",
    }
