"""The JSON types of what templates read, for validation: a parameter's declared type, the
schema of an action's output (``steps.<id>.output.<path>``), and JSON Schema navigation.

Outputs are ``model_dump(mode="json")`` data, so their schemas are read by Python field
names in serialization mode.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter

from integrations.errors import IntegrationError
from junction.clients import get_action
from junction.workflows.spec import ParamType, WorkflowSpec
from junction.workflows.templating import TemplateError, references, single_expression

__all__ = ["compatible", "output_schema", "schema_of", "template_type", "types_of"]

Schema = dict[str, Any]
_SCHEMAS: dict[str, Schema] = {}


def schema_of(tp: Any, mode: Literal["validation", "serialization"] = "serialization") -> Schema:
    """JSON schema of ``tp`` by Python field names (cached; ``{}`` when it has none)."""
    key = f"{mode}:{tp!r}"
    if key not in _SCHEMAS:
        try:
            _SCHEMAS[key] = TypeAdapter(tp).json_schema(mode=mode, by_alias=False)
        except Exception:  # some types have no JSON schema; they are then unchecked
            _SCHEMAS[key] = {}
    return _SCHEMAS[key]


def _deref(node: Schema, root: Schema) -> Schema:
    seen = 0
    while "$ref" in node and seen < 20:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root.get("$defs", {}).get(name, {})
        seen += 1
    return node


def _child(node: Schema, seg: str, root: Schema) -> Schema | str | None:
    """The schema below ``seg``; ``seg`` itself when undeclared; ``None`` when unknown."""
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        found: list[Schema | str | None] = []
        for b in branches:
            b = _deref(b, root)
            if b.get("type") == "null":
                continue
            found.append(_child(b, seg, root))
        good = [f for f in found if isinstance(f, dict)]
        if good:
            return good[0]
        return seg if found and all(isinstance(f, str) for f in found) else None
    kind = node.get("type")
    if kind == "array" or "items" in node:
        return _deref(node.get("items", {}), root) if seg.isdigit() else seg
    props = node.get("properties")
    if props is not None:
        if seg in props:
            return _deref(props[seg], root)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return _deref(extra, root)
        return seg
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return _deref(node["additionalProperties"], root)
    return None


def types_of(node: Schema, root: Schema) -> set[str]:
    """JSON types a schema node accepts (empty = anything)."""
    node = _deref(node, root)
    out: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for b in node.get(key, []):
            sub = types_of(b, root)
            if not sub:
                return set()
            out |= sub
    if node.get("allOf"):
        out |= types_of(node["allOf"][0], root)
    kind = node.get("type")
    if isinstance(kind, str):
        out.add(kind)
    elif isinstance(kind, list):
        out.update(kind)
    for value in [*node.get("enum", []), *([node["const"]] if "const" in node else [])]:
        out.add(json_type(value))
    if "properties" in node:
        out.add("object")
    return out


def json_type(value: Any) -> str:
    """The JSON type name of a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def compatible(actual: str, expected: set[str]) -> bool:
    """Whether a value of JSON type ``actual`` may validate where ``expected`` is wanted."""
    if actual in expected:
        return True
    if actual == ParamType.INTEGER.value and "number" in expected:
        return True
    # pydantic (lax) turns an integer into a float and ISO strings into dates/times
    return actual == "string" and bool(expected & {"string"})


def output_schema(
    spec: WorkflowSpec, step_id: str, path: tuple[str, ...]
) -> tuple[Schema, Schema] | str | None:
    """The schema of ``steps.<id>.output.<path>``: (node, root), or the undeclared field.

    ``None`` when unknown (a capability step, an unknown action, an untyped output).
    """
    try:
        step = spec.step(step_id)
    except KeyError:
        return None
    target = step.target()
    if target.kind != "action":
        return None
    try:
        output = get_action(target.left, target.right).output
    except IntegrationError:
        return None
    if output is None:
        return None
    if step.for_each is not None:
        output = list[output]  # type: ignore[valid-type]
    root = schema_of(output)
    node: Schema = root
    for seg in path:
        node = _deref(node, root)
        nxt = _child(node, seg, root)
        if nxt is None:
            return None
        if isinstance(nxt, str):
            return seg
        node = nxt
    return node, root


def template_type(spec: WorkflowSpec | None, value: str) -> str | None:
    """The JSON type a single-expression template renders to, when known.

    Known for ``{{ params.x }}`` (the declared type) and ``{{ steps.y.output.z }}`` (the
    output schema's type); ``None`` for anything with an operator, a filter or an index.
    """
    expr = single_expression(value)
    if spec is None or expr is None or "|" in expr:
        return None
    try:
        refs = references(value)
    except TemplateError:
        return None
    if len(refs) != 1:
        return None
    (ref,) = refs
    if expr.strip() != ".".join(ref):
        return None  # an operator or index: the type is not simply the reference's
    if ref[0] == "params" and len(ref) == 2 and ref[1] in spec.parameters:
        return spec.parameters[ref[1]].type.value
    if ref[0] == "steps" and len(ref) >= 3 and ref[2] == "output":
        resolved = output_schema(spec, ref[1], ref[3:])
        if isinstance(resolved, tuple):
            types = types_of(resolved[0], resolved[1])
            if types and len(types - {"null"}) == 1:
                return next(iter(types - {"null"}))
    return None
