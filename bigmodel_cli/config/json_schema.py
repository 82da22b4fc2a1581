"""The config's JSON Schema (`bigmodel schema`): pydantic's schema of `Config`, plus what
the loader adds around the models, so an editor or CI validator accepts every config the
loader accepts.

- Each field's own type, bounds and choices come from the models; a `mode="before"`
  validator states what it accepts with `json_schema_input_type` (`loss: mse`, one
  `data.paths` string).
- A file with `base:` holds only overrides: its mappings are merged key by key into the
  base's at any depth, so no key is required and a `model` mapping need not repeat
  `type`. It is checked against `...Overrides` copies of the sections, whose keys and
  types are the same but with nothing required. Items of lists stay strict: a list
  replaces the base's list whole.
- Which keys each `data.source` reads and needs (the loader's `SOURCE_KEYS` table) and the
  `model.type: sequential` layer allow-list are stated in the schema too.

Rules across sections (a metric that needs a classification loss, `num_heads` dividing
`d_model`, ...) are left to `bigmodel validate`: a config the schema accepts can still be
refused there, never the other way round.
"""

from __future__ import annotations

from typing import Any

from bigmodel_cli.config.allowlist import _REFUSED_ARGUMENTS, ALLOWED_LAYERS
from bigmodel_cli.config.data import SOURCE_KEYS, SOURCE_NEEDS, SOURCE_SPECIFIC_KEYS, DataConfig
from bigmodel_cli.config.root import Config

DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic emits
OVERRIDES = "Overrides"  # suffix of the lenient copy of each section in $defs
_DEFS = "#/$defs/"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file as written (before `base:` is merged in)."""
    config = Config.model_json_schema()
    defs = config.pop("$defs")
    _state_data_sources(defs["DataConfig"])
    _state_layer_allowlist(defs)
    defs["Config"] = config
    root = _overrides(config, defs)
    return {
        "$schema": DIALECT,
        **root,
        # Without `base:`, the file is the whole config: every section and required key.
        "if": {"required": ["base"], "properties": {"base": {"type": "string"}}},
        "else": {"$ref": f"{_DEFS}Config"},
        "$defs": defs,
    }


# === base: children ========================================================


def _overrides(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`schema` with no key required, at any depth but inside list items; each section it
    refers to gets its own lenient copy `<Name>Overrides` in `defs`."""
    lenient: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in ("required", "discriminator"):
            continue  # a child may leave out any key, `model.type` included
        if keyword == "$ref":
            lenient[keyword] = _lenient_ref(value, defs)
        elif keyword == "properties":
            lenient[keyword] = {k: _overrides(v, defs) for k, v in value.items()}
        elif keyword == "additionalProperties" and isinstance(value, dict):
            lenient[keyword] = _overrides(value, defs)
        elif keyword in ("anyOf", "oneOf"):
            # Without `type`, a partial model may match several variants.
            lenient["anyOf"] = [_overrides(v, defs) for v in value]
        elif keyword == "allOf":  # the data.source rules: they need the merged config
            kept = [_overrides(v, defs) for v in value if "if" not in v]
            if kept:
                lenient[keyword] = kept
        else:
            lenient[keyword] = value  # items (lists replace whole), enum, default, ...
    return lenient


def _lenient_ref(ref: str, defs: dict[str, Any]) -> str:
    name = ref.removeprefix(_DEFS)
    lenient = f"{name}{OVERRIDES}"
    if lenient not in defs:
        defs[lenient] = {}  # placeholder first: a section may refer to itself
        defs[lenient] = _overrides(defs[name], defs)
    return f"{_DEFS}{lenient}"


# === rules the models state in validators ===================================


def _state_data_sources(data: dict[str, Any]) -> None:
    """`if source is S then` the keys S does not read are absent (or null), and the keys
    it needs are present: the rule of `DataConfig._keys_fit_source`."""
    default = DataConfig.model_fields["source"].default
    rules = []
    for source in data["properties"]["source"]["enum"]:
        condition: dict[str, Any] = {"properties": {"source": {"const": source}}}
        if source != default:
            condition["required"] = ["source"]
        unused = sorted(SOURCE_SPECIFIC_KEYS - SOURCE_KEYS.get(source, set()))
        then: dict[str, Any] = {
            "properties": {
                key: {"type": "null", "description": f"data.source={source!r} does not use it"}
                for key in unused
            }
        }
        if source in SOURCE_NEEDS:
            then["required"] = list(SOURCE_NEEDS[source])
        rules.append({"if": condition, "then": then})
    data["allOf"] = rules


def _state_layer_allowlist(defs: dict[str, Any]) -> None:
    """Each `layers:` item names an allow-listed keras.layers class; its arguments are
    plain values (allowlist.check_layer_spec)."""
    defs["PlainValue"] = {
        "description": "A number, string, boolean, null, or a list of those.",
        "anyOf": [
            {"type": ["null", "boolean", "number", "string"]},
            {"type": "array", "items": {"$ref": f"{_DEFS}PlainValue"}},
        ],
    }
    layers = defs["SequentialConfig"]["properties"]["layers"]
    layers["items"] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(ALLOWED_LAYERS)}},
        "propertyNames": {"not": {"enum": sorted(_REFUSED_ARGUMENTS)}},
        "additionalProperties": {"$ref": f"{_DEFS}PlainValue"},
    }
