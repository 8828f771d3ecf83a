"""No import circle in streamd/: neither between modules nor between its packages.

Every ``import`` statement counts, the lazy ones inside functions too (the circle this test was
written for, inference -> gpu -> inference, went through one). Registries that name a module as a
"module:function" string (``streamd.inference.registry``) are not imports and do not count: the
named module is loaded on demand and may depend on the registry's package, never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streamd

PACKAGE_ROOT = Path(streamd.__file__).parent


def module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, source: str, is_package: bool = False) -> set[str]:
    """Every streamd name an import statement of ``module`` mentions, at any depth (relative ones resolved)."""
    names: set[str] = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "streamd" or name.startswith("streamd.")}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()

    def owner(name: str) -> str:
        while name not in modules:  # "streamd.x.y.function" -> "streamd.x.y"
            name = name.rpartition(".")[0]
        return name

    return {module: {owner(name) for name in imported_names(module, path.read_text(), path.name == "__init__.py")}
            - {module} for module, path in modules.items()}


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """streamd.<package> -> the other streamd packages (or top-level modules) it imports."""
    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, imports in graph.items():
        packages.setdefault(package(module), set()).update(package(m) for m in imports)
    return {name: imports - {name} - {"streamd"} for name, imports in packages.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    return "; ".join(f"{m} -> {sorted(graph[m] & members)}" for m in component)


def test_no_import_circle_between_modules() -> None:
    graph = import_graph()
    assert "streamd.inference.factory" in graph and graph["streamd.inference.factory"]  # the walk found imports
    assert [describe(graph, c) for c in cycles(graph)] == []


def test_no_import_circle_between_packages() -> None:
    graph = package_graph(import_graph())
    assert [describe(graph, c) for c in cycles(graph)] == []


def test_the_walk_sees_lazy_and_relative_imports_and_finds_a_circle() -> None:
    """The checker itself: imports inside functions and relative imports count; a circle is reported."""
    source = "import os\nfrom . import b\ndef f():\n    from streamd.gpu.build import build_gpu_detector\n"
    assert imported_names("streamd.inference.a", source) == {
        "streamd.inference", "streamd.inference.b", "streamd.gpu.build", "streamd.gpu.build.build_gpu_detector"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Stage packages that must not import each other: detectors read frames from the neutral
# streamd.frame, capture reports through streamd.sources.report.CaptureReport.
FORBIDDEN = [("streamd.inference", "streamd.sources"), ("streamd.sources", "streamd.metrics"),
             ("streamd.metrics", "streamd.sources"), ("streamd.inference", "streamd.gpu")]


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_stage_does_not_import(importer: str, imported: str) -> None:
    graph = import_graph()
    offenders = sorted(f"{module} -> {target}" for module, targets in graph.items() if module.startswith(importer)
                       for target in targets if target == imported or target.startswith(imported + "."))
    assert offenders == []
