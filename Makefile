# All set-up happens here: a fresh machine needs only python3 (3.10+) and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit-no-torch bench clean

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

test: lint $(STAMP)
	$(PY) -m pytest
	$(MAKE) --no-print-directory unit-no-torch

bench: $(STAMP)
	$(PY) benchmarks/bench_events.py --json benchmarks/results-events.json
	$(PY) benchmarks/bench_record.py --json benchmarks/results-record.json
	$(PY) benchmarks/bench_pipeline.py --json benchmarks/results-pipeline.json
	$(PY) benchmarks/bench_job.py --json benchmarks/results-job.json
	$(PY) benchmarks/report.py benchmarks/results-events.json \
		benchmarks/results-record.json benchmarks/results-pipeline.json \
		--json benchmarks/results.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
