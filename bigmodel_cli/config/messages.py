"""Turn pydantic's validation errors into `dotted.key: message` lines: what was
received, what was expected, the closest valid name. No TensorFlow import."""

from __future__ import annotations

import difflib
import reprlib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from bigmodel_cli.config.base import ConfigKeyError
from bigmodel_cli.config.model import MODEL_CLASSES
from bigmodel_cli.config.optim import LEARNING_RATE_TAGS
from bigmodel_cli.config.root import Config


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


_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel, _BOUNDED_REPR.maxstring, _BOUNDED_REPR.maxother = 3, 80, 80


def short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deeply to print whole
        text = _BOUNDED_REPR.repr(value)
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
        allowed = sorted(f.alias or k for k, f in parent.model_fields.items()) if parent else []
        owner = ".".join(str(p) for p in _resolve_location(parent_loc)[0]) or "the config"
        if parent_loc[:1] == ("model",) and len(parent_loc) == 2:
            owner = f"model.type={parent_loc[1]!r}"
        return (
            f"{dotted}: {owner} does not accept `{last}`.{did_you_mean(last, allowed)} "
            f"Expected one of: {', '.join(allowed)}. Received: {last}={short(error['input'])}"
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
            f"{dotted}: unknown value {short(value)}.{did_you_mean(value, expected)} "
            f"Expected one of: {', '.join(expected)}"
        )
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return f"{dotted}: {message}"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"{dotted}: expected a mapping of keys, received {short(error['input'])}"
    return (
        f"{dotted}: {error['msg'][0].lower()}{error['msg'][1:]}; received {short(error['input'])}"
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
