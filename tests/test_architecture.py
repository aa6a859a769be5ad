"""The package's shape, read from source with :mod:`ast` (nothing is imported).

Four rules, with no allowlist:

1. No import circle among alq's modules.
2. Imports point down the layers of :data:`LAYERS`, never up.
3. No module over :data:`MAX_MODULE_LINES` lines.
4. No class over :data:`MAX_CLASS_LINES` lines.

Every import statement counts, wherever it sits: at module level, inside a
function (a lazy import is still a dependency), under ``TYPE_CHECKING``.
``from alq.pkg import name`` is an import of the module ``alq.pkg.name`` when
that is a module, else of ``alq.pkg``. Importing a submodule runs its
package's ``__init__`` first, but that is Python's doing, not a statement:
it is not counted.
"""

from __future__ import annotations

import ast
import functools
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "alq"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250

# Top to bottom. A module belongs to the layer of the longest entry that is it or a package above it
# (``alq`` itself, the package's __init__, matches only itself). A module may import its own layer or any
# layer below; never one above. The store sits above the model: heads work on arrays handed in
# (alq.train bridges a pool's labeled rows to alq.model.train), while the store may read a head (`alq info`).
LAYERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("cli", "the typer app: parse, validate, call one library function, render",
     ("alq.cli", "alq.__main__")),
    ("commands", "each command as a library call (and the output guard they all use)",
     ("alq.select", "alq.simulate", "alq.report", "alq.export", "alq.dedup", "alq.embed", "alq.train",
      "alq.synth", "alq.guard")),
    ("algorithms", "selection strategies and what they are built from: clustering, scores, diversity, "
                   "filters, the stopping signal, evaluation measures",
     ("alq.strategies", "alq.cluster", "alq.scoring", "alq.diversity", "alq.filters", "alq.stopping",
      "alq.metrics")),
    ("store", "pools, labels, scores and annotation files on disk (Label Studio's format included)",
     ("alq.store", "alq.labelstudio")),
    ("model", "heads on arrays: the file format, fitting, cross-validation; knows no pool files",
     ("alq.model",)),
    ("engine", "how the map of a pool-wide stage runs: in this process or as Ray tasks",
     ("alq.engine",)),
    ("fs", "where bytes live (local paths, object storage), atomic writes, staged copies",
     ("alq.fs", "alq.io", "alq.staging")),
    ("base", "the package's version, typed errors, settings, the compute device",
     ("alq", "alq.errors", "alq.config", "alq.device")),
]


# -- reading the package ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


@functools.lru_cache(maxsize=None)
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), filename=str(modules()[name]))


def where(name: str, line: int | None = None) -> str:
    rel = modules()[name].relative_to(ROOT).as_posix()
    return f"{rel}:{line}" if line else rel


def _known(dotted: str, mods) -> str | None:
    """``dotted`` itself when it is a module, else the closest package or module above it in ``mods``."""
    while dotted:
        if dotted in mods:
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def _targets(name: str, node: ast.AST, mods) -> list[str]:
    """The alq modules one import statement of module ``name`` imports."""
    if isinstance(node, ast.Import):
        return [t for a in node.names if (a.name == PACKAGE or a.name.startswith(PACKAGE + "."))
                for t in [_known(a.name, mods)] if t]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: from the importing module's package
        is_package = mods[name].name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return []
    out = []
    for alias in node.names:
        target = f"{module}.{alias.name}" if f"{module}.{alias.name}" in mods else _known(module, mods)
        if target:
            out.append(target)
    return out


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line of the first statement importing it}."""
    mods = modules()
    graph: dict[str, dict[str, int]] = {}
    for name in mods:
        edges: dict[str, int] = {}
        for node in ast.walk(tree(name)):
            for target in _targets(name, node, mods):
                if target != name:
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
        graph[name] = edges
    return graph


# -- the checks (pure functions of a graph, so they can be tested on a made-up one) ------------------
def strong_components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):  # iterative Tarjan: no recursion limit on a deep package
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next((w for w in children if w in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    components.append(sorted(comp))
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest circle [a, b, ..., a] through the first module of a component (breadth-first, inside it)."""
    members, first = set(component), component[0]
    prev: dict[str, str] = {}
    queue = deque([first])
    while queue:
        v = queue.popleft()
        if v != first and first in graph.get(v, {}):
            path = []
            while v != first:
                path.append(v)
                v = prev[v]
            return [first, *reversed(path), first]
        for w in sorted(graph.get(v, {})):
            if w in members and w not in prev and w != first:
                prev[w] = v
                queue.append(w)
    raise AssertionError(f"no circle through {first} in {component}")


def layer_of(name: str) -> int | None:
    """Index in LAYERS (0 = top) of a module's layer; None when no entry covers it."""
    best, best_len = None, -1
    for i, (_, _, entries) in enumerate(LAYERS):
        for entry in entries:
            covers = name == entry or (entry != PACKAGE and name.startswith(entry + "."))
            if covers and len(entry) > best_len:
                best, best_len = i, len(entry)
    return best


def upward_imports(graph: dict[str, dict[str, int]]) -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import of a higher layer by a lower one."""
    out = []
    for src, edges in sorted(graph.items()):
        for dst, line in sorted(edges.items()):
            a, b = layer_of(src), layer_of(dst)
            if a is not None and b is not None and b < a:
                out.append((src, dst, line))
    return out


# -- the rules -------------------------------------------------------------------------------------
def test_every_module_is_in_exactly_one_layer_and_every_entry_names_a_module():
    mods = modules()
    missing = [n for n in mods if layer_of(n) is None]
    assert not missing, ("modules in no layer of LAYERS (tests/test_architecture.py): add each to the layer "
                         "it belongs to:\n  " + "\n  ".join(f"{n} ({where(n)})" for n in missing))
    entries = [e for _, _, es in LAYERS for e in es]
    dup = sorted({e for e in entries if entries.count(e) > 1})
    assert not dup, f"LAYERS lists {', '.join(dup)} more than once"
    stale = [e for e in entries if not any(n == e or n.startswith(e + ".") for n in mods)]
    assert not stale, f"LAYERS names {', '.join(stale)}, which no module of {PACKAGE} is: remove it"


def test_no_import_cycle():
    graph = import_graph()
    circles = strong_components(graph)
    lines = []
    for comp in circles:
        cycle = shortest_cycle(graph, comp)
        steps = [f"{where(a, graph[a][b])}: {a} imports {b}" for a, b in zip(cycle, cycle[1:])]
        lines.append(f"{', '.join(comp)} import each other; for one: " + " -> ".join(cycle) + "\n    "
                     + "\n    ".join(steps))
    assert not circles, (f"{len(circles)} import circle(s); a module must not depend on itself through others "
                         "(move the shared code below both, or pass it in):\n  " + "\n  ".join(lines))


def test_imports_point_down_the_layers():
    graph = import_graph()
    bad = upward_imports(graph)
    lines = [f"{where(src, line)}: {src} (layer {LAYERS[layer_of(src)][0]}) imports {dst} "
             f"(layer {LAYERS[layer_of(dst)][0]}, above it)" for src, dst, line in bad]
    order = " -> ".join(name for name, _, _ in LAYERS)
    assert not bad, (f"{len(bad)} import(s) from a lower layer to a higher one (layers, top to bottom: {order}); "
                     "move the code down, or have the caller pass in what is needed:\n  " + "\n  ".join(lines))


def test_no_module_over_the_line_limit():
    big = []
    for name, path in modules().items():
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            big.append(f"{where(name)}: {n} lines")
    assert not big, (f"{len(big)} module(s) over {MAX_MODULE_LINES} lines; split each by what it does "
                     "(one idea per module):\n  " + "\n  ".join(sorted(big)))


def test_no_class_over_the_line_limit():
    big = []
    for name in modules():
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_CLASS_LINES:
                    big.append(f"{where(name, node.lineno)}: class {node.name}, {n} lines")
    assert not big, (f"{len(big)} class(es) over {MAX_CLASS_LINES} lines; give part of the work to a "
                     "collaborator (a backend, a result object, free functions):\n  " + "\n  ".join(sorted(big)))


# -- the checker itself ----------------------------------------------------------------------------
def test_cycle_finder_reports_each_circle_with_a_shortest_path():
    graph = {"a": {"b": 1}, "b": {"c": 1, "a": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"f": 1}, "f": {"e": 1},
             "g": {"h": 1}, "h": {}}
    assert strong_components(graph) == [["a", "b", "c"], ["e", "f"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "a"]
    assert shortest_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert strong_components({"a": {"b": 1}, "b": {}}) == []


def test_imports_are_read_from_every_statement():
    src = ast.parse("import os\nfrom alq import fs, __version__\nfrom . import sibling\n"
                    "def f():\n    from alq.store.pool import open_pool\n    import alq.cli.app as app\n")
    mods = {"alq": Path("alq/__init__.py"), "alq.fs": Path("alq/fs.py"), "alq.store": Path("alq/store/__init__.py"),
            "alq.store.pool": Path("alq/store/pool.py"), "alq.store.sibling": Path("alq/store/sibling.py"),
            "alq.store.x": Path("alq/store/x.py"), "alq.cli.app": Path("alq/cli/app.py")}
    found = sorted({t for node in ast.walk(src) for t in _targets("alq.store.x", node, mods)})
    assert found == ["alq", "alq.cli.app", "alq.fs", "alq.store.pool", "alq.store.sibling"]


@pytest.mark.parametrize(("name", "layer"), [("alq", "base"), ("alq.cli.app", "cli"), ("alq.store.pool", "store"),
                                             ("alq.model.head", "model"), ("alq.strategies.base", "algorithms")])
def test_layer_of_takes_the_longest_entry(name, layer):
    assert LAYERS[layer_of(name)][0] == layer
