"""No import cycles inside rtau: every `import` of an rtau module, at module level or inside a
function (a lazy import is still a dependency), read with ast; `if TYPE_CHECKING:` blocks are
skipped (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

RTAU_DIR = Path(__file__).resolve().parents[2] / "rtau"


def _module_name(path: Path, root: Path) -> str:
    parts = ("rtau", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The rtau modules a parsed file imports (a `from rtau import x` names module rtau.x
    when x is one)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "rtau")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "rtau":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in modules}


def import_graph(root: Path = RTAU_DIR) -> dict[str, set[str]]:
    """Module name -> the rtau modules it imports, for every .py file under `root`."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name}
            for name, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def test_rtau_has_no_import_cycles():
    graph = import_graph()
    assert "rtau.media" in graph and "rtau.faces" in graph
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_cycles(tmp_path):
    pkg = tmp_path / "rtau"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from rtau.b import x\n")
    (pkg / "b.py").write_text("def f():\n    from rtau import c\n")  # lazy still counts
    (pkg / "c.py").write_text("import rtau.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from rtau.e import E\n")
    (pkg / "e.py").write_text("from rtau import d\n")
    (pkg / "sub" / "f.py").write_text("from rtau.sub import g\n")
    (pkg / "sub" / "g.py").write_text("from rtau.sub.f import y\n")
    graph = import_graph(pkg)
    assert graph["rtau.b"] == {"rtau.c"} and graph["rtau.d"] == set()
    assert find_cycles(graph) == [["rtau.a", "rtau.b", "rtau.c"], ["rtau.sub.f", "rtau.sub.g"]]
