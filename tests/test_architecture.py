"""The layout's rules, checked on the source: no import cycle, imports point down the
layers, readers do not import each other, every package says what it owns, sizes stay
readable, and every registry table covers the names its config section accepts.

The import graph is read with `ast`, so imports inside functions count as much as those
at the top of a module: a cycle through a lazy import is still a cycle.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
import typing
from functools import cache
from pathlib import Path

import pytest

import bigmodel_cli

PACKAGE = "bigmodel_cli"
ROOT = Path(bigmodel_cli.__file__).parent

# Top to bottom: a module may import its own layer or any lower one, never a higher one.
LAYERS = (
    ("cli",),
    ("experiments", "export"),
    ("training",),
    ("inference",),
    ("models",),
    ("registry", "layers", "metrics"),
    ("distribution", "rendezvous", "performance"),
    ("data",),
    ("config", "spec"),
    ("run_dir", "errors", "tfenv", "console", "faults", "cache"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 450
MAX_TOP_LEVEL_MODULES = 16


# === The import graph ========================================================


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _sources() -> dict[str, Path]:
    """Every module of the package by dotted name; a package is its __init__.py."""
    return {
        _module_name(path): path
        for path in sorted(ROOT.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


@cache
def _tree(name: str) -> ast.Module:
    path = _sources()[name]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_package(name: str) -> bool:
    return _sources()[name].name == "__init__.py"


def _absolute(name: str, node: ast.ImportFrom) -> str:
    """The module `from ... import` names, relative imports resolved against `name`."""
    if not node.level:
        return node.module or ""
    package = name if _is_package(name) else name.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _known(dotted: str) -> str | None:
    """`dotted`, or the nearest enclosing module of the package that exists."""
    while dotted.startswith(PACKAGE):
        if dotted in _sources():
            return dotted
        dotted = dotted.rpartition(".")[0]
    return None


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules one import statement loads: `from a.b import c` is a.b.c when
    c is a submodule, else a.b; no edge is added to the parent packages on the way."""
    if isinstance(node, ast.Import):
        found = (_known(alias.name) for alias in node.names)
        return [target for target in found if target]
    module = _absolute(name, node)
    if not module.startswith(PACKAGE):
        return []
    targets = []
    for alias in node.names:
        submodule = f"{module}.{alias.name}"
        target = submodule if submodule in _sources() else _known(module)
        if target:
            targets.append(target)
    return targets


@cache
def _imports(name: str) -> dict[str, int]:
    """The package modules `name` imports anywhere (top level, functions, branches),
    each with the line of its first import."""
    found: dict[str, int] = {}
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(name, node):
                if target != name:
                    found.setdefault(target, node.lineno)
    return dict(sorted(found.items()))


def _strongly_connected() -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in _imports(node):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in _sources():
        if node not in index:
            visit(node)
    return components


def _cycle_in(component: list[str]) -> list[str]:
    """One concrete cycle through the first module of a strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first, so the cycle printed is a shortest one
        following = []
        for node in frontier:
            for target in _imports(node):
                if target == start:
                    return [*paths[node], start]
                if target in members and target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def _describe(cycle: list[str]) -> str:
    steps = [
        f"{source} (line {_imports(source)[target]}) -> {target}"
        for source, target in zip(cycle, cycle[1:], strict=False)
    ]
    return "\n    ".join(steps)


def test_no_import_cycle():
    components = _strongly_connected()
    if components:
        pytest.fail(
            "import cycles inside bigmodel_cli (function-level imports count):\n"
            + "\n".join(
                f"  modules that import each other: {', '.join(component)}\n"
                f"  for example:\n    {_describe(_cycle_in(component))}"
                for component in components
            ),
            pytrace=False,
        )


# === Layers ==================================================================


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_top_level_module_has_a_layer():
    tops = {_top(name) for name in _sources()} - {""}
    unranked = sorted(tops - set(RANK))
    if unranked:
        pytest.fail(
            f"top-level modules or packages with no layer in LAYERS: {', '.join(unranked)}; "
            "add each to the layer it belongs to.",
            pytrace=False,
        )


def test_imports_point_down_the_layers():
    upward = []
    for name in _sources():
        rank = RANK.get(_top(name), len(LAYERS))  # the package __init__: below everything
        for target, line in _imports(name).items():
            target_rank = RANK.get(_top(target), len(LAYERS))
            if target_rank < rank:
                upward.append(
                    f"  {name} (line {line}) imports {target}: layer "
                    f"{_top(name) or PACKAGE!r} is below {_top(target) or PACKAGE!r}"
                )
    if upward:
        order = " -> ".join("/".join(names) for names in LAYERS)
        pytest.fail(
            f"imports pointing up the layers ({order}):\n" + "\n".join(upward), pytrace=False
        )


def test_readers_import_no_other_reader():
    sources = f"{PACKAGE}.data.sources"
    readers = [name for name in _sources() if name.startswith(f"{sources}.")]
    offenders = [
        f"  {reader} (line {line}) imports {target}"
        for reader in readers
        for target, line in _imports(reader).items()
        if target == sources or target.startswith(f"{sources}.")
    ]
    if offenders:
        pytest.fail(
            f"readers under {sources} import the table or another reader; only "
            f"{sources}/__init__.py may name them (move shared code to a leaf module):\n"
            + "\n".join(offenders),
            pytrace=False,
        )


# === Packages and sizes ======================================================

PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b")


def test_every_package_says_what_it_owns():
    problems = []
    for directory in sorted([ROOT, *ROOT.rglob("*")]):
        if not directory.is_dir() or directory.name == "__pycache__":
            continue
        if not any(directory.glob("*.py")):
            continue
        init = directory / "__init__.py"
        where = init.relative_to(ROOT.parent)
        if not init.exists():
            problems.append(f"  {where}: missing")
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        if not docstring or not docstring.strip():
            problems.append(f"  {where}: no docstring")
        elif PLACEHOLDER.search(docstring):
            problems.append(f"  {where}: the docstring is a placeholder: {docstring!r}")
    if problems:
        pytest.fail(
            "every package needs an __init__.py whose docstring says what it owns:\n"
            + "\n".join(problems),
            pytrace=False,
        )


def _functions(node: ast.AST, prefix: str):
    """(qualified name, def node) of every function and method, nested ones included."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}.{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield name, child
            yield from _functions(child, name)
        else:
            yield from _functions(child, prefix)


def _fail_if_long(long: list[tuple[int, str]], what: str) -> None:
    if long:
        listing = "\n".join(f"  {where}: {lines} lines" for lines, where in sorted(long)[::-1])
        pytest.fail(f"{what}:\n{listing}", pytrace=False)


def test_no_function_too_long():
    long = []
    for module in _sources():
        for name, node in _functions(_tree(module), module):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append((lines, f"{name} (line {node.lineno})"))
    _fail_if_long(long, f"functions over {MAX_FUNCTION_LINES} lines")


def test_no_module_too_long():
    long = []
    for path in _sources().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            long.append((lines, str(path.relative_to(ROOT.parent))))
    _fail_if_long(long, f"modules over {MAX_MODULE_LINES} lines")


def test_few_modules_at_the_top():
    modules = sorted(path.name for path in ROOT.glob("*.py") if path.name != "__init__.py")
    if len(modules) > MAX_TOP_LEVEL_MODULES:
        pytest.fail(
            f"{len(modules)} modules at the top of bigmodel_cli/ (at most "
            f"{MAX_TOP_LEVEL_MODULES}; group them into packages): {', '.join(modules)}",
            pytrace=False,
        )


# === Registry tables cover their Literals ====================================


def _choices(annotation: object) -> set[str]:
    """Every Literal value inside an annotation (through Optional, list, Annotated)."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return set().union(*map(_choices, typing.get_args(annotation)), set())
    return set()


def _field_choices(section: type, field: str) -> set[str]:
    return _choices(section.model_fields[field].annotation)


def _model_types() -> set[str]:
    from bigmodel_cli.config import Config

    union = Config.model_fields["model"].annotation
    members = typing.get_args(union)
    return set().union(*(_field_choices(member, "type") for member in members))


def _coverage(table: dict, choices: set[str], table_name: str, field: str) -> str:
    missing = sorted(choices - set(table))
    extra = sorted(set(table) - choices)
    lines = [f"{table_name} does not match the choices of `{field}`:"]
    if missing:
        lines.append(f"  accepted by the config but not in the table: {', '.join(missing)}")
    if extra:
        lines.append(f"  in the table but refused by the config: {', '.join(extra)}")
    return "\n".join(lines)


def _table(module: str, name: str) -> dict:
    table = getattr(importlib.import_module(module), name, None)
    if not isinstance(table, dict):
        pytest.fail(
            f"{module} has no `{name}` table (a dict from config name to implementation).",
            pytrace=False,
        )
    return table


def _registry_cases():
    from bigmodel_cli.config import Config, LossConfig, OptimizerConfig, ScheduleConfig
    from bigmodel_cli.config.data import DataConfig

    cases = [
        ("bigmodel_cli.data.sources", "READERS", "data.source", DataConfig, "source"),
        ("bigmodel_cli.registry", "OPTIMIZERS", "optimizer.name", OptimizerConfig, "name"),
        (
            "bigmodel_cli.registry",
            "SCHEDULES",
            "optimizer.learning_rate.schedule",
            ScheduleConfig,
            "schedule",
        ),
        ("bigmodel_cli.registry", "LOSSES", "loss.name", LossConfig, "name"),
        ("bigmodel_cli.registry", "METRICS", "metrics", Config, "metrics"),
    ]
    params = [
        pytest.param(module, name, key, _field_choices(section, field), id=name)
        for module, name, key, section, field in cases
    ]
    builders = ("bigmodel_cli.models", "BUILDERS", "model.type", _model_types())
    return [*params, pytest.param(*builders, id="BUILDERS")]


@pytest.mark.parametrize(("module", "name", "field", "choices"), _registry_cases())
def test_registry_table_covers_its_literal(module, name, field, choices):
    assert choices, f"found no Literal choices for `{field}` in the config schema"
    table = _table(module, name)
    if set(table) != choices:
        pytest.fail(_coverage(table, choices, f"{module}.{name}", field), pytrace=False)
