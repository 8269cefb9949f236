"""Run a Python snippet in a fresh interpreter, as the tests that need a clean process do."""

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    check: bool = False,
    cwd: Path | None = None,
) -> "subprocess.CompletedProcess[str]":
    """``python -c code args...`` with text output captured, bounded by ``timeout``.

    Example::

        proc = run_python("import sys; print(sys.argv[1])", "hi")
        assert proc.stdout == "hi\\n"
    """
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=check,
        cwd=cwd,
    )
