"""The house rules that keep the code easy to live in, checked on every run: ruff's lint and
format, and layers that import downwards only (no import cycle among detector/ modules,
imports inside functions counted)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_finds_nothing():
    lint = subprocess.run([RUFF, "check", "--quiet", "."], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    form = subprocess.run(
        [RUFF, "format", "--check", "--quiet", "."], cwd=REPO, capture_output=True, text=True
    )
    assert form.returncode == 0, form.stdout + form.stderr


def _imports() -> dict[str, set[str]]:
    """detector's modules -> the detector modules each imports, anywhere in its body."""
    modules = {p.stem: p for p in (REPO / "detector").glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1:
                    found = [base.split(".")[0]] if base else [a.name for a in node.names]
                elif base.startswith("detector."):
                    found = [base.split(".")[1]]
                elif base == "detector":
                    found = [a.name for a in node.names]
                else:
                    found = []
            elif isinstance(node, ast.Import):
                found = [a.name.split(".")[1] for a in node.names if a.name.startswith("detector.")]
            else:
                continue
            graph[name] |= {m for m in found if m in modules and m != name}
    return graph


def test_no_import_cycle_among_detector_modules():
    graph = _imports()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert sorted(m for m in graph if m in reach(m)) == []


# beneath every layer: helpers that import no detector module themselves
BENEATH = {"lazy"}


def test_the_bottom_layer_imports_nothing_above_it():
    graph = _imports()
    for base in BENEATH:
        assert graph[base] == set(), base
    for leaf in ("settings", "schema", "dates", "risk", "calibration", "generator"):
        assert graph[leaf] <= BENEATH, leaf
    assert graph["i18n"] <= {"settings"}
