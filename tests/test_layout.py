"""The layout of `audits/` (issue 18): one package per stage, no import circle, and a domain that never
imports Dagster, the assets, the pipelines, the reports or the demo. Read from the source with `ast`,
every import counted (module level and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUDITS = ROOT / "audits"
STAGES = ("ingest", "revenue", "flags", "demo")
FORBIDDEN = ("dagster", "dagster_duckdb", "assets", "pipelines", "reports", "audits.demo")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(AUDITS.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports: `from pkg import sub` counts as `pkg.sub` when that is a module
    (the edge Python follows), else as `pkg`."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m in _imports(path, known)} for name, path in modules.items()}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, if there is any (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt in edges and not state.get(nxt):
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if not state.get(node):
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_stage_packages_exist_with_a_docstring():
    for stage in STAGES:
        init = AUDITS / stage / "__init__.py"
        assert init.exists(), f"audits/{stage}/ is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        opening = doc.split("\n\n")[0]
        assert "takes" in opening and "gives" in opening and len(opening.splitlines()) <= 2, \
            f"audits/{stage}/__init__.py: say in two lines what the stage takes in and gives out"


def test_domain_never_imports_dagster_assets_reports_or_the_demo():
    graph = _graph()
    bad = sorted((module, imported) for module, imports in graph.items() if not module.startswith("audits.demo")
                 for imported in imports if any(imported == f or imported.startswith(f + ".") for f in FORBIDDEN))
    assert bad == []


def test_no_import_circle_between_modules():
    graph = _graph()
    internal = {m: {i for i in imports if i in graph} for m, imports in graph.items()}
    assert _cycle(internal) is None


def test_stages_depend_on_each_other_one_way():
    """Between the stage packages the arrows never make a circle (ingest may ask revenue which years it
    can price; revenue never reads ingest)."""
    graph = _graph()

    def stage(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 and parts[1] in STAGES else None

    edges: dict[str, set[str]] = {s: set() for s in STAGES}
    for module, imports in graph.items():
        for imported in imports:
            a, b = stage(module), stage(imported)
            if a and b and a != b:
                edges[a].add(b)
    assert _cycle(edges) is None


def test_no_module_far_over_600_lines():
    """A module past ~600 lines is split by step (the demo generator is config, catalogue, claims, audit)."""
    long_modules = {name: n for name, path in _modules().items()
                    if (n := len(path.read_text(encoding="utf-8").splitlines())) > 650}
    assert long_modules == {}
