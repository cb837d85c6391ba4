"""The import rules, read from the source with `ast` (every import, at module level or inside a
function): the engine never imports the TUI or textual, and engine modules import no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "engine"
FORBIDDEN = ("tui", "textual")  # the engine runs headless: under the CLI, a worker, Slurm


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import in the file of `module`. `from package import name` gives
    package.name where that is a module (a file or a package), else the package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else base))
    return found


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def engine_graph() -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports (module level and inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in engine_files():
        here = module_name(path)
        graph[here] = {m for _, m in imports(path, here) if m.split(".")[0] == "engine" and m != here}
    return graph


def cycles(graph: dict[str, set[str]]) -> dict[frozenset[str], list[str]]:
    """Every strongly connected group of two or more modules (Tarjan) -> one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return {frozenset(group): cycle_through(graph, group) for group in groups}


def cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One cycle inside a strongly connected group, from its first module back to it (breadth first)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {sorted(group)}")  # a strongly connected group always has one


def test_the_engine_never_imports_the_tui_or_textual():
    found = [
        f"{path.relative_to(REPO)}:{line}: imports {name}"
        for path in engine_files()
        for line, name in imports(path, module_name(path))
        if name.split(".")[0] in FORBIDDEN
    ]
    assert not found, "the engine must run without the TUI:\n" + "\n".join(found)


def test_engine_modules_import_no_cycle():
    found = [
        " -> ".join(cycle) + f"  (the modules that reach each other: {', '.join(sorted(group))})"
        for group, cycle in cycles(engine_graph()).items()
    ]
    assert not found, "import cycles among engine modules:\n" + "\n".join(found)


def test_the_checks_see_imports_inside_functions_and_cycles(tmp_path):
    """The rules can fail: a lazy import and a planted cycle are both found."""
    plant = tmp_path / "plant.py"
    code = "def lab():\n    from tui.app import run_app\n    import textual.app\n    from .core import spec\n"
    plant.write_text(code)
    assert [name for _, name in imports(plant, "engine.plant")] == ["tui.app", "textual.app", "engine.core.spec"]
    graph = {"engine.a": {"engine.b"}, "engine.b": {"engine.c"}, "engine.c": {"engine.a"}, "engine.d": {"engine.a"}}
    assert list(cycles(graph).values()) == [["engine.a", "engine.b", "engine.c", "engine.a"]]
    assert cycles({"engine.a": {"engine.b"}, "engine.b": set()}) == {}


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists the packages explicitly; one left out installs without it (an
    editable install, as CI uses, would not notice)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("engine", "tui")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found - listed == set(), f"packages missing from [tool.setuptools] packages: {sorted(found - listed)}"
