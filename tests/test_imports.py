"""The package's import graph has no cycle, counting every import statement, including
those inside functions (lazy imports): `genjax` layers upward (DESIGN.md, "Which way
dependencies point"), and a cycle is how a layer starts leaning on the one above it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "genjax"


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the genjax modules it imports}, from the source (ast), every import
    statement anywhere in the file. `from a.b import c` points at module a.b.c when that
    is a module, else at a.b; a relative import is resolved against the importing module."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in files else base)
            for target in targets:
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_imports_have_no_cycle():
    graph = import_graph()
    assert "genjax.loop" in graph and "genjax.run" in graph["genjax.loop"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_lazy_import_cycle(tmp_path):
    """A function-level import back up the layers is a cycle too."""
    package = tmp_path / "genjax"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from genjax.sub import high\n")
    (package / "sub" / "high.py").write_text("from .. import low\n")
    graph = import_graph(package)
    assert graph["genjax.low"] == {"genjax.sub.high"}
    assert graph["genjax.sub.high"] == {"genjax.low"}
    assert find_cycle(graph) == ["genjax.low", "genjax.sub.high", "genjax.low"]
    (package / "low.py").write_text("def f():\n    return 1\n")
    assert find_cycle(import_graph(package)) is None


def test_the_layers_point_down():
    """Nothing below the loop imports the loop; tasks import neither the loop, run.py,
    the evaluators nor the command lines; models import no data, loop or checkpointing."""
    graph = import_graph()
    clis = {"genjax.sample", "genjax.evaluate.__main__", "genjax.evaluate.rate_distortion"}
    for name, imported in graph.items():
        if name.startswith("genjax.tasks") or name.startswith("genjax.models"):
            assert not imported & {"genjax.loop", "genjax.run", *clis}, name
            assert not any(m.startswith("genjax.evaluate") for m in imported), name
        if name.startswith("genjax.models"):
            assert not any(m.startswith(("genjax.data", "genjax.checkpoint")) for m in imported)
        if name not in clis and name != "genjax":
            assert "genjax.loop" not in imported or name == "genjax.evaluate.rate_distortion", name
        assert not imported & (clis - {"genjax.evaluate.__main__"}) or name in clis, name
