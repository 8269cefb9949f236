"""tools/_cached_venv.sh: a cached compat venv that names another checkout is re-pointed.

The venvs of ``make compat`` live in ~/.cache and outlive the clone that built them
(CI refused a submission when one imported a deleted clone's src/). These tests
run the shell functions on a stand-in checkout and a stand-in venv whose ``python``
imports from the directory its last ``pip install -e .`` ran in, as an editable
install does, and logs every pip call.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The venv's python: `-m pip ...` is logged and, if pip.fixes exists, records the
# directory pip ran in; anything else runs the real interpreter without site
# packages, importing from that directory's src/ alone.
_FAKE_PYTHON = """#!/bin/sh
venv=$(dirname "$0")/..
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    echo "$*" >>"$venv/pip.log"
    [ -f "$venv/pip.fixes" ] && pwd -P >"$venv/installed-from"
    exit 0
fi
[ -f "$venv/broken" ] && exit 1
PYTHONPATH="$(cat "$venv/installed-from" 2>/dev/null)/src" exec {python} -S "$@"
"""


def _checkout(path: Path) -> Path:
    (path / "src" / "torchelastic_otel").mkdir(parents=True)
    (path / "src" / "torchelastic_otel" / "__init__.py").write_text("")
    (path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "_cached_venv.sh", path / "tools")
    (path / "pyproject.toml").write_text('[project]\nname = "stand-in"\n')
    return path


def _venv(path: Path, installed_from: Path | None) -> Path:
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(_FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    if installed_from is not None:
        (path / "installed-from").write_text(str(installed_from))
    return path


def _shell(checkout: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f". tools/_cached_venv.sh && {script}"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
        check=False,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return _checkout(tmp_path / "clone")


def test_a_venv_of_a_deleted_clone_is_pointed_here(checkout: Path, tmp_path: Path) -> None:
    venv = _venv(tmp_path / "venv", installed_from=tmp_path / "deleted-clone")
    (venv / "pip.fixes").touch()
    done = _shell(checkout, f"point_venv_here {venv} compat")
    assert done.returncode == 0, done.stderr
    assert "it imported 'nothing'" in done.stdout
    assert (venv / "pip.log").read_text() == "-m pip install --quiet --no-deps -e .\n"
    assert (venv / "installed-from").read_text().strip() == str(checkout.resolve())


def test_a_venv_of_this_checkout_is_left_alone(checkout: Path, tmp_path: Path) -> None:
    venv = _venv(tmp_path / "venv", installed_from=checkout.resolve())
    done = _shell(checkout, f"point_venv_here {venv} compat")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert not (venv / "pip.log").exists()


def test_a_venv_that_stays_elsewhere_fails_saying_where(checkout: Path, tmp_path: Path) -> None:
    other = _checkout(tmp_path / "other-clone")
    venv = _venv(tmp_path / "venv", installed_from=other.resolve())
    done = _shell(checkout, f"point_venv_here {venv} compat")  # pip "succeeds", changes nothing
    assert done.returncode != 0
    assert f"still imports {other.resolve()}/src/torchelastic_otel" in done.stderr


def test_a_stamped_venv_is_ready_only_if_its_python_imports(checkout: Path, tmp_path: Path) -> None:
    venv = _venv(tmp_path / "venv", installed_from=checkout.resolve())
    ready = f"cached_venv_ready {venv} torchelastic_otel"
    assert _shell(checkout, ready).returncode != 0  # no stamp yet
    stamp = _shell(checkout, f"cached_venv_stamp {venv}").stdout.strip()
    Path(stamp).touch()
    assert _shell(checkout, ready).returncode == 0
    (venv / "broken").touch()  # its interpreter moved, say
    assert _shell(checkout, ready).returncode != 0
