"""The package's import graph: one direction of dependency, no cycles.

Every ``import aiotcp...`` counts, including those under ``if TYPE_CHECKING:`` and
inside functions: a cycle through any of them couples the modules just the same.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import aiotcp
import aiotcp.connection
import aiotcp.queued

PACKAGE = Path(aiotcp.__file__).parent


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the aiotcp modules it imports.

    ``from P import name`` is an edge to ``P.name`` when that is a module, else to ``P``
    itself (its ``__init__``): a submodule that takes names from its own package's
    ``__init__`` while that ``__init__`` imports it is a cycle like any other. The
    parent package every import runs implicitly is not an edge (it holds for every module).
    """
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base]) if base else ".".join(up)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in modules else base)
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 20  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_a_submodule_importing_from_its_own_package_init_is_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import inner\n")
    (pkg / "inner" / "__init__.py").write_text("def open_it():\n    from pkg.inner import sub\n")
    (pkg / "inner" / "sub.py").write_text("from pkg.inner import Shared\nfrom . import other\n")
    (pkg / "inner" / "other.py").write_text("")
    graph = import_graph(pkg)
    assert graph["pkg"] == {"pkg.inner"}  # a submodule named in ``from P import``
    assert graph["pkg.inner.sub"] == {"pkg.inner", "pkg.inner.other"}
    assert find_cycle(graph) == ["pkg.inner", "pkg.inner.sub", "pkg.inner"]


def test_lower_layers_never_import_the_server() -> None:
    graph = import_graph()
    for low in ("aiotcp.codecs", "aiotcp.connection", "aiotcp.queued", "aiotcp.registry",
                "aiotcp.dispatch", "aiotcp.streams", "aiotcp.app"):
        assert "aiotcp.server" not in graph[low], low


def test_ack_data_received_has_no_branch_on_a_server_setting() -> None:
    """The read path is chosen once: the ack connection's data_received reads no Config."""
    for cls in (aiotcp.connection.PrefixConnection, aiotcp.connection.InlineConnection,
                aiotcp.connection.BatchConnection, aiotcp.queued.QueuedConnection):
        source = inspect.getsource(cls.data_received)
        for setting in ("config", "_timed", "_mode", "timed", "kind", "metrics"):
            assert setting not in source, (cls.__name__, setting)
