"""The contracts between ftorch's packages, read from the source (no import executed): the module import graph
has no cycle, counting imports inside functions (which only hide one); no module reaches into another module's
private names; no module is itself named as private. Imports under `if TYPE_CHECKING:` are for the type checker
only and never run, so they are left out of the graph."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ftorch"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The target of a relative import, as Python resolves it."""
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _owner(name: str) -> str | None:
    """The ftorch module a dotted name lives in (the longest prefix that is a module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _scan():
    """(import edges, private names used across modules) over every module, lazy imports included."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    private: list[str] = []
    for module, (path, is_package) in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_nodes(tree)
        aliases: dict[str, str] = {}  # a local name bound to an ftorch module
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (owner := _owner(alias.name)) is not None:
                        edges[module].add(owner)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, is_package, node.level, node.module)
                if not target.startswith("ftorch"):
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in MODULES:  # `from . import x`: the submodule x
                        edges[module].add(submodule)
                        aliases[alias.asname or alias.name] = submodule
                        continue
                    owner = _owner(target)
                    if owner is not None:
                        edges[module].add(owner)
                        if _private(alias.name) and owner != module:
                            private.append(f"{module}:{node.lineno} imports {owner}.{alias.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and aliases.get(node.value.id, module) != module):
                private.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
        edges[module].discard(module)
    return edges, private


EDGES, PRIVATE = _scan()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_scan_sees_the_imports_it_must():
    """The graph is not vacuous: known edges, lazy and relative ones included, are in it."""
    assert "ftorch.backends.hf.loop" in EDGES["ftorch.backends.peft.backend"]  # a top-level relative import
    assert "ftorch.backends.peft.preference" in EDGES["ftorch.backends.peft.backend"]  # inside a method
    assert "ftorch.run.signals" in EDGES["ftorch.eval.finished"]  # inside a function
    assert "ftorch.backends.openai.eval" in EDGES["ftorch.backends.openai.backend"]  # `from . import eval`
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules():
    assert _cycles(EDGES) == [], "import cycles (move the shared piece to a module both can import)"


def test_no_private_name_used_across_modules():
    assert PRIVATE == [], "another module's private name (make it public, or move it to a neutral module)"


def test_no_module_is_named_as_private():
    named = [name for name in MODULES if _private(name.rpartition(".")[2])]
    assert named == [], "a module used across a package is not private: name it without the underscore"
