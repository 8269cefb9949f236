"""What docs/mapping.md promises, read from the document itself."""

import re
from collections.abc import Iterable
from pathlib import Path

MAPPING_DOC = Path(__file__).resolve().parents[2] / "docs" / "mapping.md"


def documented_attribute_keys() -> tuple[set[str], list[re.Pattern[str]]]:
    text = MAPPING_DOC.read_text()
    section = text.split("### Attributes", 1)[1].split("## Resource", 1)[0]
    exact: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[1]) <= {"-", " "}:
            continue
        # Keys are the backticked names outside parentheses and not after "=".
        cell = re.sub(r"\([^)]*\)", "", cells[1])
        cell = re.sub(r"=\s*`[^`]*`", "", cell)
        for key in re.findall(r"`([^`]+)`", cell):
            if "<" in key:
                regex = re.escape(key.split("<")[0]) + r"[\w.]+"
                patterns.append(re.compile(regex))
            else:
                exact.add(key)
    return exact, patterns


def undocumented(keys: Iterable[str]) -> list[str]:
    """The keys that docs/mapping.md's attribute tables do not name."""
    exact, patterns = documented_attribute_keys()
    return sorted(k for k in keys if k not in exact and not any(p.fullmatch(k) for p in patterns))
