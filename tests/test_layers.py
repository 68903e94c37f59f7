"""The package's import layers (ARCHITECTURE.md, "Layers"): imports go down, never up, and never in a circle.

The layer table is read from the document itself, so the test and the page
cannot drift apart. Every ``import`` in ``detect/`` counts, the ones inside
functions too (a lazy import is still a dependency), for the layers and for
circles alike.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "detect"


def layer_table():
    """``{unit: layer}`` from the ``layers`` block of ARCHITECTURE.md, lowest layer 0."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no ```layers block"
    table = {}
    rows = [line.split("#")[0].split() for line in block.group(1).splitlines()]
    for layer, units in enumerate(row for row in rows if row):
        for unit in units:
            assert unit not in table, f"{unit} listed twice"
            table[unit] = layer
    return table


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path, modules, name=None, source=None):
    """The ``detect`` modules the file at ``path`` imports: ``[(module, line)]``.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is
    a module, else of ``pkg``. ``name`` and ``source`` stand in for the
    module's name and text (a planted file in a test).
    """
    name = name or module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "detect"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.split(".")[0] != "detect":
                continue
            subs = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
            if len(subs) < len(node.names):
                found.append((base, node.lineno))
            found += [(sub, node.lineno) for sub in subs]
    return found


def unit_of(module, table):
    """The longest entry of the layer table that ``module`` is or lies under."""
    parts = module.split(".")[1:]
    for end in range(len(parts), -1, -1):
        unit = ".".join(parts[:end]) or "detect"
        if unit in table:
            return unit
    raise AssertionError(f"{module} is in no layer of ARCHITECTURE.md")


def test_every_module_has_a_layer():
    table = layer_table()
    for module in all_modules():
        unit_of(module, table)


def layer_violations(module, imports, table):
    """Lines naming each import of ``module`` that goes to a higher layer or a sibling unit of its layer."""
    here = unit_of(module, table)
    wrong = []
    for target, line in imports:
        there = unit_of(target, table)
        if there == here or table[there] < table[here]:
            continue
        where = "up" if table[there] > table[here] else "sideways"
        wrong.append(f"{module}:{line} imports {target} ({here} -> {there}, {where})")
    return wrong


def test_no_import_goes_up_or_sideways():
    table = layer_table()
    modules = all_modules()
    wrong = [line for module, path in modules.items()
             for line in layer_violations(module, imports_of(path, modules), table)]
    assert not wrong, "\n".join(wrong)


def find_cycle(graph):
    """One cycle of ``graph`` (``{node: set(nodes)}``) as a list of nodes, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def initialised_by_import(target, importer, modules):
    """The modules that importing ``target`` from ``importer`` runs: ``target`` and
    the packages above it that ``importer`` is not already inside."""
    parts = target.split(".")
    chain = {".".join(parts[:end]) for end in range(2, len(parts) + 1)}
    return {name for name in chain if name in modules and not (importer + ".").startswith(name + ".")}


def test_no_import_circles():
    modules = all_modules()
    graph = {module: {name for target, _ in imports_of(path, modules)
                      for name in initialised_by_import(target, module, modules) if name != module}
             for module, path in modules.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_importing_a_submodule_runs_its_package():
    modules = {"detect.models", "detect.models.protocol", "detect.yolo", "detect.yolo.model"}
    assert initialised_by_import("detect.models.protocol", "detect.yolo.model", modules) == {
        "detect.models", "detect.models.protocol"}
    assert initialised_by_import("detect.models.protocol", "detect.models", modules) == {"detect.models.protocol"}


@pytest.mark.parametrize("graph, has_cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, False),
])
def test_find_cycle_reference_cases(graph, has_cycle):
    # The checker itself, on graphs drawn by hand.
    assert (find_cycle(graph) is not None) == has_cycle


def test_planted_upward_and_sideways_imports_are_reported():
    # The rule must be able to fail: a lazy import of the train layer inside
    # an ops module, and a task family importing the other one, are caught.
    table = layer_table()
    modules = all_modules()
    path = PACKAGE / "ops" / "boxes.py"
    planted = path.read_text() + "\n\ndef _planted():\n    from detect.train import engine\n"
    wrong = layer_violations("detect.ops.boxes", imports_of(path, modules, source=planted), table)
    assert len(wrong) == 1 and "up" in wrong[0]
    assert layer_violations("detect.ops.boxes", imports_of(path, modules), table) == []
    assert layer_violations("detect.yolo.model", [("detect.faster_rcnn.model", 1)], table) == [
        "detect.yolo.model:1 imports detect.faster_rcnn.model (yolo -> faster_rcnn, sideways)"]
