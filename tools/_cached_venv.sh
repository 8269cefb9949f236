# Sourced by tools/compat.sh and tools/otel-compat.sh: what their cached venvs
# share. Each venv lives outside the repository (~/.cache/torchelastic-otel) and
# outlives the checkout that built it, but holds this package as an editable
# install, which names that checkout's src/ by absolute path. A venv built from a
# clone since deleted or moved imports nothing, so every use re-points it here.

# cached_venv_stamp VENV: the file whose presence says VENV holds what this
# checkout's pyproject.toml asks for (a changed pyproject.toml rebuilds it).
cached_venv_stamp() {
    echo "$1/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
}

# cached_venv_ready VENV MODULE: VENV is stamped for this pyproject.toml and its
# Python runs and imports MODULE (a venv copied from another machine, or whose
# interpreter moved, is rebuilt rather than trusted).
cached_venv_ready() {
    [ -f "$(cached_venv_stamp "$1")" ] && "$1/bin/python" -c "import $2" >/dev/null 2>&1
}

# point_venv_here VENV LABEL: make VENV import torchelastic_otel from this
# checkout; re-installs the package alone (no dependencies, ~5 s) when it does not.
point_venv_here() {
    local venv=$1 label=$2 here found
    here="$(pwd -P)/src/torchelastic_otel"
    found=$("$venv/bin/python" -c \
        'import os, torchelastic_otel as t; print(os.path.dirname(os.path.realpath(t.__file__)))' \
        2>/dev/null || true)
    [ "$found" = "$here" ] && return 0
    echo "$label: pointing $venv at this checkout (it imported '${found:-nothing}')"
    "$venv/bin/python" -m pip install --quiet --no-deps -e .
    found=$("$venv/bin/python" -c \
        'import os, torchelastic_otel as t; print(os.path.dirname(os.path.realpath(t.__file__)))')
    [ "$found" = "$here" ] || { echo "$label: $venv still imports $found" >&2; return 1; }
}
