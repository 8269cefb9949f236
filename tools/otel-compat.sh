#!/usr/bin/env bash
# The tests of what the package takes from OpenTelemetry's internals, against
# another OpenTelemetry release (the oldest pyproject.toml allows, by default),
# in a venv of its own cached outside the repository (no torch: ~1 minute to build).
#
#   tools/otel-compat.sh venv 1.40.0    create (or reuse) the venv of opentelemetry 1.40.0
#   tools/otel-compat.sh test 1.40.0    run the fence, fast-path and pipeline tests in it
#
# The instrumentation package's version follows the SDK's (1.40 -> 0.61b0).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_cached_venv.sh
action=${1:?venv or test}
version=${2:?an opentelemetry-sdk version, e.g. 1.40.0}
cache=${TORCHELASTIC_OTEL_CACHE:-$HOME/.cache/torchelastic-otel}
venv="$cache/venvs/otel-$version"
stamp=$(cached_venv_stamp "$venv")
minor=${version#1.}
minor=${minor%%.*}
contrib="0.$((minor + 21))b0"

case "$action" in
venv)
    if cached_venv_ready "$venv" opentelemetry.sdk; then
        point_venv_here "$venv" otel-compat
        echo "otel-compat: opentelemetry $version venv ready ($venv)"
        exit 0
    fi
    started=$(date +%s)
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet \
        "opentelemetry-api==$version" "opentelemetry-sdk==$version" \
        "opentelemetry-exporter-otlp-proto-grpc==$version" \
        "opentelemetry-exporter-otlp-proto-http==$version" \
        "opentelemetry-instrumentation==$contrib" \
        -e . "pytest>=8" "hypothesis>=6.100" "rich>=13"
    touch "$stamp"
    echo "otel-compat: opentelemetry $version venv built in $(( $(date +%s) - started )) s ($venv)"
    ;;
test)
    [ -f "$stamp" ] || { echo "otel-compat: no venv: tools/otel-compat.sh venv $version" >&2; exit 1; }
    point_venv_here "$venv" otel-compat
    "$venv/bin/python" -c "import importlib.metadata as m; print('otel-compat: opentelemetry-sdk', m.version('opentelemetry-sdk'))"
    TORCHELASTIC_OTEL_BLOCK_TORCH=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q \
        tests/unit/test_upstream.py tests/unit/test_fast_paths.py tests/unit/test_otel_pipeline.py
    ;;
*)
    echo "usage: tools/otel-compat.sh venv|test VERSION" >&2
    exit 2
    ;;
esac
