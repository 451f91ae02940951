"""Tool parameter schemas, translated for each provider.

Built-in tools have small hand-written schemas; MCP servers send whatever JSON Schema
their framework generates (`$schema`, `$defs` + `$ref`, `const`, `default`, `examples`,
`title` on every property ...).  Each provider accepts a different subset:

- `for_anthropic(schema)`: `input_schema` takes JSON Schema, but the root must be an object;
  `$schema` is dropped.
- `for_gemini(schema)`: `parametersJsonSchema` takes a subset; local `$ref`s are inlined
  (cycles are cut to `{}` after a few levels), `const` becomes a one-value `enum`, enums of
  anything but strings and numbers are dropped, and every keyword outside the documented
  subset is removed (removing a constraint never makes a valid call invalid).

Both return a new dict and never raise: a schema they cannot read becomes an empty object.
"""
from __future__ import annotations

import copy
from typing import Any

_EMPTY_OBJECT = {"type": "object", "properties": {}}
_GEMINI_KEYS = {"type", "format", "title", "description", "enum", "items", "prefixItems", "minItems",
                "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties", "additionalProperties",
                "required", "nullable", "minLength", "maxLength", "pattern", "propertyOrdering"}
_SCHEMA_LIST_KEYS = ("anyOf", "oneOf", "prefixItems")
_MAX_REF_DEPTH = 8


def _object_root(schema: Any) -> dict:
    if not isinstance(schema, dict):
        return dict(_EMPTY_OBJECT)
    root = copy.deepcopy(schema)
    root.pop("$schema", None)
    if root.get("type") != "object":
        if "properties" in root and "type" not in root:
            root["type"] = "object"
        else:   # a non-object root: the model passes it as the one argument "value"
            return {"type": "object", "properties": {"value": root}, "required": ["value"]}
    root.setdefault("properties", {})
    return root


def for_anthropic(schema: Any) -> dict:
    return _object_root(schema)


def for_gemini(schema: Any) -> dict:
    root = _object_root(schema)
    defs = {**root.get("definitions", {}), **root.get("$defs", {})}
    cleaned = _gemini(root, defs, 0)
    return cleaned if isinstance(cleaned, dict) else dict(_EMPTY_OBJECT)


def _resolve(ref: str, defs: dict) -> Any:
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            return defs.get(ref[len(prefix):])
    return None


def _gemini(node: Any, defs: dict, depth: int) -> Any:
    if not isinstance(node, dict):
        return {}
    if "$ref" in node:
        target = _resolve(str(node["$ref"]), defs) if depth < _MAX_REF_DEPTH else None
        merged = {**(target if isinstance(target, dict) else {}),
                  **{k: v for k, v in node.items() if k != "$ref"}}
        return _gemini(merged, defs, depth + 1) if target is not None else {
            k: v for k, v in _gemini({k: v for k, v in node.items() if k != "$ref"}, defs, depth).items()}
    out: dict[str, Any] = {}
    if "const" in node and "enum" not in node:
        node = {**node, "enum": [node["const"]]}
    for key, value in node.items():
        if key not in _GEMINI_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _gemini(sub, defs, depth) for name, sub in value.items()}
        elif key == "items" or key == "additionalProperties" and isinstance(value, dict):
            out[key] = _gemini(value, defs, depth) if isinstance(value, dict) else value
        elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
            out[key] = [_gemini(sub, defs, depth) for sub in value]
        elif key == "enum":
            if isinstance(value, list) and value and all(
                    isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
                out[key] = value
        elif key == "required":
            if isinstance(value, list):
                props = node.get("properties")
                out[key] = [r for r in value if isinstance(r, str) and (not isinstance(props, dict) or r in props)]
        else:
            out[key] = value
    return out
