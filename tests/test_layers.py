"""The package's shape (issue 21): stages import downwards only, no import cycles
(lazy imports inside functions included), few modules flat at the root."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "bigmodel_cli"


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PKG.rglob("*.py")
    }


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every package module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = package.split(".")
                base = ".".join(
                    parts[: len(parts) - n.level + 1] + ([n.module] if n.module else [])
                )
            for a in n.names:
                for cand in (f"{base}.{a.name}", base):
                    if cand in known:
                        out.add(cand)
                        break
        elif isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name in known}
    out.discard(name)
    return {m for m in out if m != "bigmodel_cli"}


def test_layers_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports"
    )
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    r = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=PKG.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_no_import_cycles_lazy_ones_included():
    mods = _modules()
    graph = {m: _imports(p, m, set(mods)) for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_at_most_eight_modules_flat_at_the_root():
    flat = sorted(p.stem for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert len(flat) <= 8, flat


def test_no_function_over_100_lines():
    long = []
    for name, path in _modules().items():
        for n in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                and n.end_lineno - n.lineno + 1 > 100
            ):
                long.append(f"{name}.{n.name}: {n.end_lineno - n.lineno + 1} lines")
    assert not long, long
