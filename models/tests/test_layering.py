"""Layering of ``lfusion``: the package's internal import graph has no cycle.

Every ``import``/``from ... import`` anywhere in a module counts, function-local ones included
(a cycle hidden inside a function is still a cycle between the two modules); relative imports are
resolved against the importing module's package.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "lfusion"
PACKAGE = PACKAGE_DIR.name


def module_files() -> Dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` is the package)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = (PACKAGE,) + path.relative_to(PACKAGE_DIR).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # ``from .x import y`` in module a.b.c resolves against a.b (in a package, against itself).
                parts = name.split(".")
                anchor = parts[: len(parts) - (node.level - 1) - (0 if is_package else 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            # ``from pkg import mod`` imports the submodule; ``from mod import obj`` the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules)
    return found


def import_graph() -> Dict[str, Set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle (first module repeated at the end) per strongly connected component that has one."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def connect(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
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
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    found = []
    for component in components:
        start = component[0]
        if len(component) == 1 and start not in graph[start]:
            continue
        # Shortest path back to ``start`` inside the component (breadth first).
        members, previous, frontier = set(component), {start: None}, [start]
        while start not in [t for n in frontier for t in graph[n]]:
            following = []
            for node in frontier:
                for target in sorted(graph[node] & members):
                    if target not in previous:
                        previous[target] = node
                        following.append(target)
            frontier = following
        last = next(n for n in frontier if start in graph[n])
        path = [start]
        while last is not None:
            path.append(last)
            last = previous[last]
        found.append(path[::-1])
    return found


def test_the_graph_sees_function_local_and_relative_imports():
    graph = import_graph()
    assert "lfusion.data" in graph["lfusion.ood"]  # ``from .data import ...``
    assert "lfusion.features" in graph["lfusion.clips"]  # inside a function
    assert "lfusion.encoder" in graph["lfusion.export"]  # inside a function


def test_cycles_are_found_and_printed_as_paths():
    graph = {"a": {"b"}, "b": {"c", "e"}, "c": {"a"}, "d": {"d"}, "e": set(), "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b", "c", "a"], ["d", "d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_lfusion_import_graph_is_acyclic():
    found = cycles(import_graph())
    assert not found, "import cycles in lfusion (function-local imports count):\n" + "\n".join(" -> ".join(cycle) for cycle in found)
