"""Load a config: YAML (safely), `base:` inheritance, `--set` overrides, readable errors.

Every user mistake becomes a `ConfigError` that carries *all* problems as
`dotted.key: message` lines; the CLI prints them and exits 2. No TensorFlow import.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bigmodel_cli.config import LEARNING_RATE_TAGS, MODEL_CLASSES, Config, ConfigKeyError
from bigmodel_cli.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000
MAX_ALIASES = 100  # a real config needs a handful; a "billion laughs" document needs many
# ... or a few, nested: 9 levels of 9 aliases each expand to 9**9 values, which validating
# and quoting in error messages would walk. So the expanded document is bounded too.
MAX_EXPANDED_NODES = 100_000
MAX_BASE_DEPTH = 10


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


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a config file that must hold one YAML mapping."""
    if not path.exists():
        raise ConfigError([f"{path}: no such file"])
    if not path.is_file():
        raise ConfigError([f"{path}: not a file"])
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
    except (OSError, ValueError) as err:  # a NUL byte, a name too long for the file system
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError([f"{path}: base: not a usable path ({reason}): {_short(base)}"]) from None
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


# === validation errors =======================================================


def _model_classes_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, list, Annotated)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        found = []
        for arg in typing.get_args(annotation):
            found.extend(_model_classes_in(arg))
        return found
    return []


def _resolve_location(loc: tuple) -> tuple[list[str | int], type[BaseModel] | None]:
    """Drop pydantic's union tags from `loc`; return it and the section holding its last key."""
    clean: list[str | int] = []
    section: type[BaseModel] | None = Config
    for element in loc:
        if clean[-1:] == ["learning_rate"] and element in LEARNING_RATE_TAGS:
            continue  # the union's tag, not a key the user wrote
        if isinstance(element, int) or section is None:
            clean.append(element)
            continue
        if element in section.model_fields:
            clean.append(element)
            candidates = _model_classes_in(section.model_fields[element].annotation)
            section = candidates[0] if len(candidates) == 1 else None
            if len(candidates) > 1:
                section = _Pending(candidates)  # type: ignore[assignment]
            continue
        if isinstance(section, _Pending):  # this element is a union tag
            section = section.pick(element)
            continue
        clean.append(element)  # an unknown key: stays in the path, ends the walk
        section = None
    return clean, section if not isinstance(section, _Pending) else None


class _Pending:
    """A union of sections whose member is named by the next path element (its tag)."""

    def __init__(self, members: list[type[BaseModel]]):
        self.members = members

    def pick(self, tag: str) -> type[BaseModel] | None:
        if tag in MODEL_CLASSES:
            return MODEL_CLASSES[tag]
        return next((m for m in self.members if m.__name__ == tag), None)

    @property
    def model_fields(self) -> dict:
        return {}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ " Did you mean 'x'?" for the choice closest to `word`, or "" when none is close."""
    choices = list(choices)
    prefixed = [c for c in choices if len(str(word)) >= 2 and c.startswith(str(word))]
    close = prefixed or difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    raw_loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), ConfigKeyError):
        raw_loc = (*raw_loc, *ctx["error"].key.split("."))
    clean, _ = _resolve_location(raw_loc)
    parent_loc, last = raw_loc[:-1], raw_loc[-1] if raw_loc else ""
    dotted = ".".join(str(p) for p in clean) or "config"

    if kind == "extra_forbidden":
        _, parent = _resolve_location(parent_loc)
        allowed = sorted(parent.model_fields) if parent else []
        owner = ".".join(str(p) for p in _resolve_location(parent_loc)[0]) or "the config"
        if parent_loc[:1] == ("model",) and len(parent_loc) == 2:
            owner = f"model.type={parent_loc[1]!r}"
        return (
            f"{dotted}: {owner} does not accept `{last}`.{did_you_mean(last, allowed)} "
            f"Expected one of: {', '.join(allowed)}. Received: {last}={_short(error['input'])}"
        )
    if kind == "missing":
        return f"{dotted}: required key is missing"
    if kind == "union_tag_not_found":
        return f"{dotted}.type: missing; expected one of: {', '.join(MODEL_CLASSES)}"
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        return (
            f"{dotted}.type: unknown type {tag!r}.{did_you_mean(tag, MODEL_CLASSES)} "
            f"Expected one of: {', '.join(MODEL_CLASSES)}"
        )
    if kind == "literal_error":
        expected = [e.strip().strip("'") for e in ctx.get("expected", "").replace(" or ", ",")
                    .split(",") if e.strip()]  # fmt: skip
        value = error["input"]
        return (
            f"{dotted}: unknown value {_short(value)}.{did_you_mean(value, expected)} "
            f"Expected one of: {', '.join(expected)}"
        )
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return f"{dotted}: {message}"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"{dotted}: expected a mapping of keys, received {_short(error['input'])}"
    return (
        f"{dotted}: {error['msg'][0].lower()}{error['msg'][1:]}; received {_short(error['input'])}"
    )


def _expand(error: dict[str, Any]) -> list[dict[str, Any]]:
    """One error per problem of a ConfigKeyError (a validator may find several)."""
    cause = (error.get("ctx") or {}).get("error")
    if error["type"] != "value_error" or not isinstance(cause, ConfigKeyError):
        return [error]
    return [
        {**error, "ctx": {"error": ConfigKeyError(key, message)}} for key, message in cause.problems
    ]


def validation_problems(error: ValidationError) -> list[str]:
    """Turn a pydantic ValidationError into `dotted.key: message` lines."""
    return [_describe(e) for raw in error.errors(include_url=False) for e in _expand(raw)]


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
    data = cfg.model_dump(mode="json", exclude_none=True)
    data.pop("base", None)
    return yaml.safe_dump(data, sort_keys=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, as `bigmodel schema` prints it."""
    from bigmodel_cli.config_schema import json_schema as schema

    return schema()
