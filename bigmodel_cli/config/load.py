"""Load a config: YAML (safely), `base:` inheritance, `--set` overrides, readable errors.

Every user mistake becomes a `ConfigError` that carries *all* problems as
`dotted.key: message` lines; the CLI prints them and exits 2. No TensorFlow import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bigmodel_cli.config.messages import did_you_mean, short, validation_problems  # noqa: F401
from bigmodel_cli.config.root import Config
from bigmodel_cli.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000
MAX_ALIASES = 100  # a real config needs a handful; a "billion laughs" document needs many
# ... or a few, nested: 9 levels of 9 aliases each expand to 9**9 values, which validating
# and quoting in error messages would walk. So the expanded document is bounded too.
MAX_EXPANDED_NODES = 100_000
MAX_BASE_DEPTH = 10
MAX_KEY_DEPTH = 32  # a real config is a few sections deep; `--set a.a.a...` is not one
# Only files named like configs are read as configs, so no error message can quote a
# line of a file that is not one (`base: /etc/shadow` would otherwise show its keys).
CONFIG_SUFFIXES = (".yaml", ".yml")


# === YAML ====================================================================


class _BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs and duplicate keys.

    YAML forbids duplicate keys but PyYAML keeps the last one, so a second `train:` would
    silently drop the first; here it is an error naming the line.
    """

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(
                    f"more than {MAX_ALIASES} YAML aliases (*name); refusing to expand"
                )
        return super().compose_node(parent, index)

    def get_single_node(self):  # noqa: D102 - PyYAML hook
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(
                f"more than {MAX_EXPANDED_NODES:,} values once aliases are expanded; "
                "refusing to expand"
            )
        return node

    def compose_mapping_node(self, anchor):  # noqa: D102 - PyYAML hook
        node = super().compose_mapping_node(anchor)
        seen = set()
        for key_node, _ in node.value:  # keys as written; `<<` merges may be overridden
            if isinstance(key_node, yaml.ScalarNode) and not key_node.tag.endswith(":merge"):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.composer.ComposerError(
                        "while composing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return node


# YAML 1.2 (and every editor) reads `1e-3` and `1.0e3` as numbers; PyYAML, which follows
# YAML 1.1, only floats with a dot and a signed exponent, and `1e-3` would be the string
# "1e-3", which strict validation refuses. The loader reads them as 1.2 does.
_BoundedSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """PyYAML's int, but an integer past Python's int-string limit (4,300 digits; its
    ValueError) is a YAML error at its line, not a traceback."""
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"an integer of {len(node.value):,} characters, too long to be read as a number",
            node.start_mark,
        ) from None


_BoundedSafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values in `node` once aliases are expanded, without expanding them: memoized per
    node, so a bomb costs as much to measure as its text."""
    if id(node) not in sizes:
        sizes[id(node)] = 0  # a recursive alias counts as nothing more
        children = node.value if isinstance(node, yaml.CollectionNode) else []
        pairs = (c for child in children for c in (child if isinstance(child, tuple) else [child]))
        sizes[id(node)] = 1 + sum(_expanded_size(c, sizes) for c in pairs)
    return sizes[id(node)]


def parse_yaml(text: str, origin: str) -> Any:
    """Parse one YAML document with the bounded safe loader; errors name `origin`."""
    try:
        return yaml.load(text, Loader=_BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        raise ConfigError([f"{where}: malformed YAML: {err.problem or err}"]) from None
    except yaml.YAMLError as err:
        raise ConfigError([f"{origin}: malformed YAML: {err}"]) from None
    except RecursionError:
        raise ConfigError([f"{origin}: YAML nested too deeply"]) from None


def _config_name_problem(path: Path) -> str | None:
    """Why `path` is not read as a config: its name (or its symlink's target's) does not
    end in .yaml or .yml. Checked before reading, so nothing of it is ever quoted."""
    try:
        names = [path, path.resolve()]
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        return "a symbolic link that loops"
    for name in names:
        if name.suffix.lower() not in CONFIG_SUFFIXES:
            shown = "" if name == path else f" (a link to {name})"
            return (
                f"not a .yaml or .yml file{shown}; bigmodel reads configs only from files "
                "named so, and never shows the content of any other"
            )
    return None


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a config file that must hold one YAML mapping."""
    if not path.exists():
        if path.is_symlink():
            raise ConfigError([f"{path}: a symbolic link to nowhere (a loop, or no target)"])
        raise ConfigError([f"{path}: no such file"])
    if not path.is_file():
        raise ConfigError([f"{path}: not a file"])
    problem = _config_name_problem(path)
    if problem:
        raise ConfigError([f"{path}: {problem}"])
    try:
        with path.open("rb") as handle:  # bounded: `base:` may name any file, /proc included
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: more than {MAX_CONFIG_BYTES} bytes; too big for a config"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError([f"{path}: not UTF-8 text (byte {err.start})"]) from None
    document = parse_yaml(text, str(path))
    if document is None:
        raise ConfigError([f"{path}: empty; a config needs at least `model: {{type: mlp}}`"])
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise ConfigError([f"{path}: expected a mapping of sections, received a {kind}"])
    bad_keys = [k for k in document if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError([f"{path}: section names must be strings; received {bad_keys[0]!r}"])
    return document


# === base: and --set =========================================================


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge mappings key by key; lists and scalars in `override` replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_base(path: Path, document: dict[str, Any], seen: list[Path]) -> dict[str, Any]:
    base = document.get("base")
    if base is None:
        return document
    if not isinstance(base, str) or not base:
        raise ConfigError([f"{path}: base: expected the path of a config file"])
    try:
        base_path = (path.parent / base).resolve()
        is_file = base_path.is_file()
    except RuntimeError:  # a symlink loop (an OSError from Python 3.13 on)
        raise ConfigError([f"{path}: base: {short(base)} is a symbolic link that loops"]) from None
    except (OSError, ValueError) as err:  # a NUL byte, a name too long for the file system
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError([f"{path}: base: not a usable path ({reason}): {short(base)}"]) from None
    for name in (Path(base), base_path):
        if name.suffix.lower() not in CONFIG_SUFFIXES:
            raise ConfigError([
                f"{path}: base: {short(str(name))} is not a .yaml or .yml file; a config "
                "extends only another config (bigmodel never reads, or shows, other files)"
            ])  # fmt: skip
    if base_path in seen:
        chain = " -> ".join(str(p) for p in [*seen, base_path])
        raise ConfigError([f"{path}: base: circular inheritance: {chain}"])
    if len(seen) >= MAX_BASE_DEPTH:
        raise ConfigError([f"{path}: base: more than {MAX_BASE_DEPTH} levels of inheritance"])
    if not is_file:
        raise ConfigError([f"{path}: base: no such file {base_path}"])
    parent = _resolve_base(base_path, read_yaml_mapping(base_path), [*seen, base_path])
    merged = deep_merge(parent, {k: v for k, v in document.items() if k != "base"})
    merged.pop("base", None)
    return merged


def apply_overrides(document: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `--set a.b.c=value` overrides (values parsed as YAML) to a raw config."""
    result = deep_merge({}, document)
    problems = []
    for item in overrides:
        key, sep, raw_value = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if len(parts) > MAX_KEY_DEPTH:
            problems.append(
                f"--set {short(key, 60)}: {len(parts)} levels of keys; a config is at most "
                f"{MAX_KEY_DEPTH} deep"
            )
            continue
        if parts[0] == "base":
            problems.append(
                "--set base: `base` is resolved when the file is read; write it "
                "in the config file instead"
            )
            continue
        if not sep or not key or not all(parts):
            problems.append(
                f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. "
                "--set optimizer.learning_rate=3e-4"
            )
            continue
        try:
            value = parse_yaml(raw_value, f"--set {key}")
        except ConfigError as err:
            problems.extend(err.problems)
            continue
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and part == "loss":
                child = node[part] = {"name": child}  # `loss: mse` is short for {name: mse}
            elif isinstance(child, dict):
                child = node[part] = dict(child)
            else:
                where = ".".join(parts[: depth + 1])
                problems.append(f"--set {key}: {where} is a {type(child).__name__}, not a section")
                break
            node = child
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems)
    return result


# === entry points ============================================================


def config_from_mapping(document: dict[str, Any], origin: str = "config") -> Config:
    try:
        # Strict: "3" is not 3 and 1 is not true, so the JSON Schema (`bigmodel schema`)
        # describes exactly what is accepted; YAML already gives numbers and booleans.
        return Config.model_validate(document, strict=True)
    except ValidationError as err:
        raise ConfigError(validation_problems(err)) from None
    except RecursionError:
        raise ConfigError([f"{origin}: nested too deeply"]) from None


def resolve_document(path: Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The raw config mapping: file, `base:` merged in, overrides applied."""
    path = Path(path)
    document = read_yaml_mapping(path)
    document = _resolve_base(path, document, [path.resolve()])
    return apply_overrides(document, overrides)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Load, merge, override and validate a config file. Raises ConfigError."""
    return config_from_mapping(resolve_document(Path(path), overrides), str(path))


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML, suitable for `config.yaml` in a run directory."""
    data = cfg.model_dump(mode="json", exclude_none=True, by_alias=True)  # init.from
    data.pop("base", None)
    return yaml.safe_dump(data, sort_keys=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, as `bigmodel schema` prints it."""
    from bigmodel_cli.config.json_schema import json_schema as schema

    return schema()
