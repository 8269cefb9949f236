#!/usr/bin/env bash
# The torchrun tests against other torch releases, each in a venv of its own,
# cached outside the repository (PyPI's torch wheels are CUDA builds: ~2 minutes
# and 5-7 GB each; they import fine on a machine without a GPU).
#
#   tools/compat.sh venv 2.8.0     create (or reuse) the venv of torch 2.8.0
#   tools/compat.sh test 2.8.0     run the e2e torchrun tests in it
#
# The venv is rebuilt when pyproject.toml changes, and re-pointed at this
# checkout when another one built it (tools/_cached_venv.sh). The differential suite (every
# call against torch's own events module) runs too when the version is the newest
# supported one, whose events module this package mirrors byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/_cached_venv.sh
action=${1:?venv or test}
version=${2:?a torch version, e.g. 2.8.0}
cache=${TORCHELASTIC_OTEL_CACHE:-$HOME/.cache/torchelastic-otel}
venv="$cache/venvs/torch-$version"
stamp=$(cached_venv_stamp "$venv")
newest=2.15.0

case "$action" in
venv)
    if cached_venv_ready "$venv" torch.distributed.elastic.events; then
        point_venv_here "$venv" compat
        echo "compat: torch $version venv ready ($venv)"
        exit 0
    fi
    started=$(date +%s)
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "torch==$version"
    "$venv/bin/python" -m pip install --quiet -e '.[compat]'
    touch "$stamp"
    echo "compat: torch $version venv built in $(( $(date +%s) - started )) s ($venv)"
    ;;
test)
    [ -f "$stamp" ] || { echo "compat: no venv for torch $version: tools/compat.sh venv $version" >&2; exit 1; }
    point_venv_here "$venv" compat
    # test_lost_nodes: what a lost and a preempted node need of torch (the dynamic
    # rendezvous' membership and store, the agent's SignalException path).
    tests=(tests/e2e/test_torchrun.py tests/e2e/test_torchrun_users.py tests/e2e/test_lost_nodes.py)
    [ "$version" = "$newest" ] && tests+=(tests/differential)
    echo "compat: torch $version: ${tests[*]}"
    TORCHELASTIC_OTEL_REQUIRE=otelcol-torchelastic \
        "$venv/bin/python" -m pytest -p no:cacheprovider -q "${tests[@]}"
    ;;
*)
    echo "usage: tools/compat.sh venv|test VERSION" >&2
    exit 2
    ;;
esac
