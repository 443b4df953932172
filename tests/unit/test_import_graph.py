"""No import cycle anywhere in the package, lazy (function-level) imports included: a cycle
that only a lazy import keeps from failing is one refactor away from an ImportError."""

from __future__ import annotations

import ast
from pathlib import Path

import evalharness

PACKAGE = Path(evalharness.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the evalharness modules it imports at run time, anywhere in its body."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Imports under ``if TYPE_CHECKING:`` never run, so they close no cycle.
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test).endswith("TYPE_CHECKING")
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pkg import mod`` imports the module pkg.mod when there is one.
                targets.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                               else node.module for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest import path from ``start`` back to itself, if any."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module]):
                if target == start:
                    return [*paths[module], start]
                if target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    return None


def test_no_import_cycle_in_the_package() -> None:
    graph = _import_graph()
    assert "evalharness.backends.options" in graph["evalharness.backends.openai_compat"]
    assert "evalharness.report.cli" in graph["evalharness.evaluate"]  # the graph sees edges
    cycles = {m: c for m in graph if (c := _cycle_through(graph, m)) is not None}
    assert cycles == {}, "\n".join(" -> ".join(c) for c in cycles.values())


def test_backend_options_is_still_importable_from_the_registry() -> None:
    from evalharness.backends.options import BackendOptions
    from evalharness.backends.registry import BackendOptions as FromRegistry

    assert FromRegistry is BackendOptions
