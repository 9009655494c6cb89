"""What ``az deployment group create`` does to a template before the workflow exists: check the
parameter values against their declarations, then evaluate every ARM ``[...]`` expression
(``[[`` escapes a literal bracket). Only the ARM functions the templates use are known; anything
else is an error, as for workflow expressions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .expressions import ExpressionError, evaluate, parse, to_text

_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str), "securestring": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict), "secureobject": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


@dataclass
class Deployment:
    resources: list[dict[str, Any]]
    parameters: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)

    def resource(self, kind: str) -> dict[str, Any]:
        found = [r for r in self.resources if r["type"].lower() == kind.lower()]
        if len(found) != 1:
            raise ExpressionError(f"expected one {kind} resource; found {len(found)}")
        return found[0]


@dataclass
class ArmContext:
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg"
    location: str = "westeurope"
    # reference(resourceId, apiVersion) answers: what ARM would read from existing resources.
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    callback_url: str = "https://example.invalid/workflows/manual/invoke"


def parameter_values(template: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    declared = template.get("parameters") or {}
    unknown = set(given) - set(declared)
    if unknown:
        raise ExpressionError(f"parameters not declared by the template: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        kind = str(spec["type"]).lower()
        if name in given:
            value = given[name]
        elif "defaultValue" in spec:
            value = spec["defaultValue"]
        else:
            raise ExpressionError(f"parameter {name!r} is required (no defaultValue)")
        values[name] = value
        if isinstance(value, str) and value.startswith("["):
            continue  # a default computed by an expression: checked after evaluation
        if not _TYPES[kind](value):
            raise ExpressionError(f"parameter {name!r}: {value!r} is not of type {spec['type']}")
        if "allowedValues" in spec and value not in spec["allowedValues"]:
            raise ExpressionError(f"parameter {name!r}: {value!r} is not one of {spec['allowedValues']}")
        for bound, test in (("minValue", lambda v, b: v >= b), ("maxValue", lambda v, b: v <= b)):
            if bound in spec and not test(value, spec[bound]):
                raise ExpressionError(f"parameter {name!r}: {value!r} breaks {bound} {spec[bound]}")
    return values


def deploy(template: dict[str, Any], given: dict[str, Any],
           context: ArmContext | None = None) -> Deployment:
    context = context or ArmContext()
    values = parameter_values(template, given)
    variables: dict[str, Any] = {}
    functions: dict[str, Callable[..., Any]] = {
        "parameters": lambda name: values[name],
        "variables": lambda name: variables[name],
        "concat": _concat,
        "if": lambda cond, a, b: a if cond else b,
        "empty": lambda v: v is None or len(v) == 0,
        "equals": lambda a, b: a == b,
        "not": lambda a: not a,
        "createarray": lambda *a: list(a),
        "createobject": lambda *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
        "json": lambda text: json.loads(text),
        "string": to_text,
        "tolower": lambda s: s.lower(),
        "resourcegroup": lambda: {"name": context.resource_group, "location": context.location,
                                  "id": f"/subscriptions/{context.subscription_id}/resourceGroups/"
                                        f"{context.resource_group}"},
        "subscription": lambda: {"subscriptionId": context.subscription_id,
                                 "id": f"/subscriptions/{context.subscription_id}"},
        "reference": lambda rid, api_version=None: _reference(context, rid),
        "guid": lambda *parts: str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts))),
        "subscriptionresourceid": lambda kind, *names: (
            f"/subscriptions/{context.subscription_id}/providers/{kind}/{'/'.join(names)}"),
        "resourceid": lambda kind, *names: (
            f"/subscriptions/{context.subscription_id}/resourceGroups/{context.resource_group}"
            f"/providers/{kind}/{'/'.join(names)}"),
        "listcallbackurl": lambda rid, api_version: {"value": context.callback_url},
    }

    def ev(value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("[[") or not (value.startswith("[") and value.endswith("]")):
                return value[1:] if value.startswith("[[") else value
            return evaluate(parse(value[1:-1]), functions)
        if isinstance(value, list):
            return [ev(v) for v in value]
        if isinstance(value, dict):
            return {ev(k) if isinstance(k, str) else k: ev(v) for k, v in value.items()}
        return value

    for name in list(values):
        values[name] = ev(values[name])
    for name, value in (template.get("variables") or {}).items():
        variables[name] = ev(value)
    resources = []
    for resource in template.get("resources") or []:
        if "condition" in resource and not ev(resource["condition"]):
            continue
        resources.append(ev(resource))
    outputs = {name: ev(spec["value"]) for name, spec in (template.get("outputs") or {}).items()}
    return Deployment(resources, values, outputs)


def _concat(*values: Any) -> Any:
    if values and all(isinstance(v, list) for v in values):
        return [item for v in values for item in v]
    return "".join(to_text(v) for v in values)


def _reference(context: ArmContext, resource_id: str) -> dict[str, Any]:
    if resource_id not in context.references:
        raise ExpressionError(f"reference({resource_id!r}): no such resource in this deployment")
    return context.references[resource_id]
