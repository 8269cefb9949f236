# All set-up happens here: a fresh machine needs python3 (3.10+) and make, and for
# `make test` also Go 1.26+ (it builds the OpenTelemetry Collector from Go
# modules) and promtool (Debian: apt-get install prometheus). .ci/run installs
# promtool itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit-no-torch bench bench-scale-large clean collector stack-build \
	stack-test compat compat-venvs dashboards otel-compat

# The oldest and the newest torch with torchrun's --event_log_handler (2.8 and 2.15;
# the main venv has 2.13). tools/compat.sh caches their venvs outside the repo.
COMPAT_TORCH ?= 2.8.0 2.15.0

# The stack's Go programs, built from Go modules into a cache outside the
# repository (otel-collector/build.sh; rebuilt only when a version changes).
STACK_BUILD := otel-collector/build.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m torchelastic_otel.demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The suite again with `import torch` blocked: differential tests skip, the rest pass.
unit-no-torch: $(STAMP)
	TORCHELASTIC_OTEL_BLOCK_TORCH=1 $(PY) -m pytest -q -p no:cacheprovider tests/unit

# otelcol-torchelastic (needs Go 1.26): a few minutes the first time, then nothing.
collector:
	$(STACK_BUILD) collector

# ... and Jaeger v2 and Prometheus 3, for `make stack-test` (several more minutes).
stack-build:
	$(STACK_BUILD) collector jaeger prometheus

# The collector validates every collector config, promtool checks the alerts, and
# a real job feeds Debian's Prometheus for the dashboard's queries inside the suite:
# TORCHELASTIC_OTEL_REQUIRE makes a missing one a failure.
test: lint $(STAMP) collector
	TORCHELASTIC_OTEL_REQUIRE=otelcol-torchelastic,promtool,debian-prometheus,grafana-foundation-sdk \
		$(PY) -m pytest
	$(MAKE) --no-print-directory unit-no-torch

# The real collector in front of real Jaeger v2 and Prometheus 3 (the dashboard's
# queries too, on Prometheus 3's own OTLP translation).
stack-test: $(STAMP) stack-build
	TORCHELASTIC_OTEL_REQUIRE=otelcol-torchelastic,jaeger,prometheus,promtool,grafana-foundation-sdk \
		$(PY) -m pytest -p no:cacheprovider tests/integration/test_real_collector.py \
		tests/e2e/test_dashboard_real_job.py tests/unit/test_collector_stack.py \
		tests/unit/test_kubernetes.py

# The Grafana dashboard, generated from semconv (commit the JSON it writes).
dashboards: $(STAMP)
	$(PY) otel-collector/grafana/generate.py

# What the package takes from OpenTelemetry's internals (otel/_upstream.py),
# against the oldest release pyproject.toml allows and one between (the main venv
# has the newest); tools/otel-compat.sh caches their venvs outside the repo.
OTEL_COMPAT ?= 1.40.0 1.43.0

otel-compat:
	@for v in $(OTEL_COMPAT); do tools/otel-compat.sh venv $$v && tools/otel-compat.sh test $$v || exit 1; done

compat-venvs:
	@for v in $(COMPAT_TORCH); do tools/compat.sh venv $$v || exit 1; done

# The e2e torchrun tests (and, on the newest, the differential suite) on each.
compat: compat-venvs collector
	@for v in $(COMPAT_TORCH); do tools/compat.sh test $$v || exit 1; done

bench: $(STAMP)
	$(PY) benchmarks/bench_events.py --json benchmarks/results-events.json
	$(PY) benchmarks/bench_record.py --json benchmarks/results-record.json
	$(PY) benchmarks/bench_pipeline.py --json benchmarks/results-pipeline.json
	$(PY) benchmarks/bench_job.py --json benchmarks/results-job.json
	$(PY) benchmarks/bench_progress.py --json benchmarks/results-progress.json
	$(PY) benchmarks/bench_scale.py --nodes 16 256 1024 --workers 8 --restarts 3 \
		--json benchmarks/results-scale.json
	$(PY) benchmarks/report.py benchmarks/results-events.json \
		benchmarks/results-record.json benchmarks/results-pipeline.json \
		--scale benchmarks/results-scale.json $(wildcard benchmarks/scale-large.json) \
		--json benchmarks/results.json

# The 4,096- and 10,000-node rows, through our collector (gateway and sampler measured):
# ~25 min on 2 cores and ~2 GB of OTLP JSON in a temporary directory; `make bench`
# reports them with its own rows when benchmarks/scale-large.json is there.
bench-scale-large: $(STAMP) collector
	$(PY) benchmarks/bench_scale.py --nodes 4096 10000 --workers 8 --restarts 3 \
		--collector otelcol --json benchmarks/scale-large.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
