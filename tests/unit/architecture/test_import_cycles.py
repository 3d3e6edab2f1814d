"""Packages under src/hartonomous/ depend on each other without cycles (docs/architecture.md).

Every import counts, lazy ones inside functions and type-checking ones included: a cycle hidden
behind a lazy import is still two packages that cannot be understood, tested or replaced apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hartonomous

ROOT = Path(hartonomous.__file__).parent


def _package_of(module: str) -> str | None:
    """`hartonomous.search.query` -> `search`; None outside the project."""
    parts = module.split(".")
    if parts[0] != "hartonomous" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path, root: Path) -> str:
    """The dotted name of a file under ``root`` (the `hartonomous` package folder)."""
    parts = ["hartonomous", *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path, root: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from hartonomous import db` imports the package `db`.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """package -> packages it imports (itself excluded)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        source = _package_of(_module_name(path, root))
        if source is None:
            continue
        targets = graph.setdefault(source, set())
        for imported in _imported_modules(path, root):
            target = _package_of(imported)
            if target is None or target == source:
                continue
            # A package folder or a top-level module; names such as `hartonomous.__version__`
            # are not packages.
            if (root / target).is_dir() or (root / f"{target}.py").exists():
                targets.add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

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
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _edges_within(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a in group for b in sorted(graph[a]) if b in group]


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert {"embed", "search", "ingest", "db"} <= graph.keys()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between packages: " + "; ".join(
        ", ".join(_edges_within(group, graph)) for group in cycles
    )


def test_embed_does_not_import_search_or_billing() -> None:
    graph = package_graph()
    assert not graph["embed"] & {"search", "billing", "ingest"}


def test_a_cycle_is_found(tmp_path: Path) -> None:
    # The detector itself: two packages importing each other, one of them lazily.
    for name, body in (
        ("alpha", "from hartonomous.beta import thing\n"),
        ("beta", "def f():\n    from hartonomous.alpha import other\n"),
        ("gamma", "import hartonomous.alpha\n"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "mod.py").write_text(body)
    graph = package_graph(tmp_path)
    assert graph == {"alpha": {"beta"}, "beta": {"alpha"}, "gamma": {"alpha"}}
    assert find_cycles(graph) == [["alpha", "beta"]]
