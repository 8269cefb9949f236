"""The package's shape: who may import whom, and what a training node installs.

* ``events/`` is the torch mirror: it imports nothing else of the package.
* No module of the package is part of an import cycle (every ``import``, lazy
  ones inside functions included).
* The cycle key and the reading of torch's messages are shared by the exporter and
  the timeline, in modules without OpenTelemetry.
* The wheel carries the package and its LICENSE, no test helpers, and its
  required dependencies are only what an agent needs; the timeline page's style and
  script are package data in it.
"""

import ast
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import run_python

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = "torchelastic_otel"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The package modules ``name`` imports (anywhere in its code)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield from _resolve(full if full in modules else base, modules)


def _resolve(name: str, modules: dict[str, Path]) -> Iterator[str]:
    if name in modules:
        yield name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_events_mirror_imports_nothing_else_of_the_package() -> None:
    graph = _graph()
    events = {m for m in graph if m == f"{PACKAGE}.events" or m.startswith(f"{PACKAGE}.events.")}
    outside = {(m, dep) for m in events for dep in graph[m] if dep not in events}
    assert outside == set()


def test_no_module_is_part_of_an_import_cycle() -> None:
    graph = _graph()
    assert len(graph) > 30  # the walk found the package
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]]


def _third_party_imports(path: Path) -> set[str]:
    """The top-level names of what ``path`` imports from outside the package."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out - {PACKAGE}


def test_the_cycle_key_and_torchs_messages_are_taught_once() -> None:
    """The exporter and the timeline share one cycle-key type and one reading of
    torch's messages, in modules without OpenTelemetry (the viewer stays light)."""
    modules = _modules()
    graph = _graph()
    shared = {f"{PACKAGE}.cycles", f"{PACKAGE}.torch_messages"}
    for name in shared:
        assert graph[name] <= {f"{PACKAGE}.semconv"}, graph[name]
        assert _third_party_imports(modules[name]) <= set(sys.stdlib_module_names)
    timeline = set().union(
        *(deps for m, deps in graph.items() if m.startswith(f"{PACKAGE}.timeline."))
    )
    assert shared <= graph[f"{PACKAGE}.otel.spans"] and shared <= timeline
    assert f"{PACKAGE}.torch_messages" in graph[f"{PACKAGE}.otel._chatter"]
    # semconv's RDZV_* names (torch's sentences) are read in torch_messages alone.
    readers = set()
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            ident = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
            if isinstance(ident, str) and ident.startswith("RDZV_"):
                readers.add(name)
    assert readers == {f"{PACKAGE}.semconv", f"{PACKAGE}.torch_messages"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            ROOT,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("torchelastic_otel-*.whl")
    return path


def test_the_wheel_carries_the_license_and_no_test_helpers(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = z.read(metadata).decode()
        license_files = [n for n in names if n.endswith("/LICENSE")]
        assert license_files, names
        assert b"BSD 3-Clause License" in z.read(license_files[0])
    assert "License-Expression: BSD-3-Clause" in text
    assert all(n.startswith((f"{PACKAGE}/", f"{PACKAGE}-")) for n in names), names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_the_timeline_page_style_and_script_are_in_the_wheel(wheel: Path, tmp_path: Path) -> None:
    """timeline/static/ is package data: in the wheel, and inlined in the page from it."""
    static = SRC / PACKAGE / "timeline" / "static"
    sources = {p.name: p.read_bytes() for p in static.iterdir()}
    assert set(sources) == {"timeline.css", "timeline.js"}
    with zipfile.ZipFile(wheel) as z:
        for name, data in sources.items():
            assert z.read(f"{PACKAGE}/timeline/static/{name}") == data, name
        z.extractall(tmp_path / "site")
    code = (
        "import sys, torchelastic_otel.timeline.html as h; "
        "assert h.__file__.startswith(sys.argv[1]), h.__file__; "
        "sys.stdout.write(h.render_html([]))"
    )
    site = str(tmp_path / "site")
    proc = run_python(code, site, env={**os.environ, "PYTHONPATH": site}, check=True)
    page = proc.stdout
    for name, tag in (("timeline.css", "style"), ("timeline.js", "script")):
        text = sources[name].decode()
        assert f"<{tag}>{text}</{tag}>" in page, name
        assert f"</{tag}" not in text  # inlined: it must not end its own element


def test_an_agent_installs_only_what_an_agent_needs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(metadata).decode()
    required = sorted(
        line.split(":", 1)[1].split(";")[0].strip().split(">")[0].split("=")[0].split("<")[0]
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    )
    assert required == [
        "opentelemetry-api",
        "opentelemetry-exporter-otlp-proto-grpc",
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-instrumentation",
        "opentelemetry-sdk",
        "wrapt",
    ]
    extras = {
        line.split("extra ==", 1)[1].strip().strip("'\"")
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" in line
    }
    assert {"timeline", "demo", "test"} <= extras


def test_the_timeline_without_rich_says_how_to_get_it() -> None:
    code = (
        "import sys; sys.modules['rich'] = None; "
        "from torchelastic_otel import cli; sys.exit(cli.main(['timeline', 'x.json']))"
    )
    proc = run_python(code)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "torchelastic-otel timeline needs rich: pip install 'torchelastic-otel[timeline]'"
    ]
