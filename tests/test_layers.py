"""The code's own imports (every `import`, lazy ones inside functions too, read from the source as text):
the packages under `src/legato/` form layers with no import that runs back up, and no module is in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n == "legato" or n.startswith("legato.")}


def _unit(module: str) -> str:
    """The layer a module belongs to: `legato.X` for a package or a top-level module."""
    return ".".join(module.split(".")[:2])


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _graphs():
    mods = _modules()
    module_edges, package_edges = {}, {}
    for name, path in mods.items():
        for target in _imports(path) & set(mods):  # (`from legato import __version__` names no module)
            if target != name:
                module_edges.setdefault(name, set()).add(target)
            a, b = _unit(name), _unit(target)
            if a != b and "legato" not in (a, b):  # `legato` itself is the package's face
                package_edges.setdefault(a, set()).add(b)
    return module_edges, package_edges


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}}) is None


def test_no_package_imports_one_that_imports_it_back():
    _, packages = _graphs()
    assert "legato.generators" in packages and "legato.unlearning" in packages  # the graph was read
    assert _cycle(packages) is None, "packages in a cycle: " + " → ".join(_cycle(packages))


def test_no_module_cycle():
    modules, _ = _graphs()
    assert _cycle(modules) is None, "modules in a cycle: " + " → ".join(_cycle(modules))


def test_the_bottom_layers_import_nothing_above_them():
    _, packages = _graphs()
    # ode works on any nn.Module; the generator layer names no world built on it
    assert not packages.get("legato.ode", set()) - {"legato.errors", "legato.files", "legato.lazy"}
    assert not packages.get("legato.generators", set()) & {"legato.synthfaces", "legato.lfwfaces", "legato.flows",
                                                           "legato.unlearning", "legato.cli"}


def test_backends_register_themselves_and_an_unknown_name_lists_them(monkeypatch):
    import pytest

    from legato.errors import InputError
    from legato.generators import registry
    from legato.generators.toy import ToyGenerator

    assert "synthfaces" in registry.backend_names()  # declared by the package's entry points
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    made = []
    registry.register_backend("tiny-test", lambda device: made.append(device) or ToyGenerator())
    assert isinstance(registry.load("tiny-test"), ToyGenerator) and str(made[0]) == "cpu"
    with pytest.raises(InputError, match="'synthfaces'.*'tiny-test'"):
        registry.load("no-such-world")
