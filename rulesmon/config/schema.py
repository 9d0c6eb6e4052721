"""JSON Schema for editors (draft-07, what yaml-language-server supports), from the models.

Post-processing makes the schema accept the same shorthands the models accept, and replaces
the action union's `oneOf` with `if/then` on the action's kind key, so an editor reports the
precise error instead of "not valid under any of the given schemas".
"""

from __future__ import annotations

import json
from typing import Any

from .units import DURATION_PATTERN

SCHEMA_ID = "https://rulesmon.invalid/schemas/ruleset.schema.json"

#: Models that also accept a shorter form (the models' `_shorthand` validators).
_SHORTHANDS: dict[str, list[dict[str, Any]]] = {
    "Target": [
        {"type": "string", "description": "One apprise URL."},
        {"type": "array", "items": {"type": "string"}, "description": "Several apprise URLs."},
    ],
    "ErrorSpec": [{"type": "string", "description": "A regular expression (severity error)."}],
    "LogSpec": [{"type": "string", "description": "A log path with default settings."}],
    "Summary": [
        {"type": "string", "description": "One target name."},
        {"type": "array", "items": {"type": "string"}, "description": "Target names."},
    ],
    "Repeat": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN, "description": "Re-notify interval."},
    ],
}
#: Fields that accept one name as well as a list of names.
_ONE_OR_MANY = {("Rule", "notify"), ("NotifyAction", "notify"), ("Defaults", "notify"),
                ("LogSpec", "preset"), ("Ruleset", "extends")}
_ACTION_MODELS = {"notify": "NotifyAction", "log": "LogAction", "exec": "ExecAction",
                  "control": "ControlAction", "stop": "StopAction"}


def generate() -> dict[str, Any]:
    from .models import Ruleset

    schema = Ruleset.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
    defs = schema.pop("$defs", {})
    for name, field in _ONE_OR_MANY:
        target = schema if name == "Ruleset" else defs[name]
        prop = target["properties"][field]
        desc = prop.get("description", "")
        variants = prop.get("anyOf", [prop])
        lists = [v for v in variants if v.get("type") == "array"]
        if lists:
            item = lists[0]["items"]
            new = {"anyOf": [dict(item), {"type": "array", "items": item}]}
            if any(v.get("type") == "null" for v in variants):
                new["anyOf"].append({"type": "null"})
            if "default" in prop:
                new["default"] = prop["default"]
            new["description"] = desc
            target["properties"][field] = new
    out: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "rulesmon ruleset",
        **schema,
        "definitions": defs,
    }
    out["patternProperties"] = {"^x-": {"description": "Free blocks for YAML anchors; ignored."}}
    _rewrite(out)
    _actions(out)
    return out


def _rewrite(node: Any) -> None:
    """Widen refs to models with shorthands; drop pydantic's `title` noise on properties."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in _SHORTHANDS:
            name = ref.rsplit("/", 1)[-1]
            node.pop("$ref")
            node["anyOf"] = [*_SHORTHANDS[name], {"$ref": ref}]
            return
        for key in list(node):
            if key == "properties" and isinstance(node[key], dict):
                for prop in node[key].values():
                    if isinstance(prop, dict):
                        prop.pop("title", None)
            _rewrite(node[key])
    elif isinstance(node, list):
        for item in node:
            _rewrite(item)


def _actions(schema: dict[str, Any]) -> None:
    do = schema["definitions"]["Rule"]["properties"]["do"]
    desc = do.get("description", "")
    branches = [{"if": {"required": [kind]}, "then": {"$ref": f"#/definitions/{model}"}}
                for kind, model in _ACTION_MODELS.items()]
    kinds = list(_ACTION_MODELS)
    do.clear()
    do.update({
        "type": "array",
        "description": desc,
        "default": [],
        "items": {
            "anyOf": [
                {"type": "string", "enum": ["log", "stop"],
                 "description": "An action without options."},
                {
                    "type": "object",
                    "description": "One of: " + ", ".join(kinds),
                    "anyOf": [{"required": [k]} for k in kinds],
                    "allOf": branches,
                },
            ]
        },
    })


def dumps() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"
