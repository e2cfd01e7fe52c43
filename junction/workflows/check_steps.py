"""Checks of each step against the registries: its target (integration action or
capability and providers), its inputs against the action's input model, its side effects
(``cache``, ``retries``, ``idempotency_key``), its fallbacks, ``for_each``, and the spec's
``concurrency`` entries.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from integrations.base import ActionSpec
from integrations.catalog import load_catalog
from integrations.errors import IntegrationError
from integrations.yamlconfig import DataPath, did_you_mean
from junction.clients import get_action
from junction.workflows.capabilities import CAPABILITIES, Capability, get_capability
from junction.workflows.problems import Reporter
from junction.workflows.reftypes import compatible, json_type, schema_of, template_type, types_of
from junction.workflows.spec import Step, WorkflowSpec
from junction.workflows.templating import (
    TemplateError,
    evaluate,
    expression_source,
    has_template,
    references,
    time_budget,
)

__all__ = ["check_steps", "walk_strings"]

_STATIC_SECONDS = 1.0
"""Time budget of evaluating a constant ``for_each`` expression during validation."""


def check_steps(report: Reporter, spec: WorkflowSpec) -> None:
    """Check every step (duplicate ids, targets, inputs, effects) and ``concurrency``."""
    ids: set[str] = set()
    for i, step in enumerate(spec.steps):
        if step.id in ids:
            report.error(f"duplicate step id {step.id!r}", ("steps", i, "id"), step.id)
        ids.add(step.id)
    checks = _StepChecks(report, spec)
    for step in spec.steps:
        checks.step(step)
    catalog = load_catalog()
    for name in spec.concurrency:
        if name not in catalog:
            report.error(f"concurrency names unknown integration {name!r}", ("concurrency", name))
        elif name not in report.used:
            report.warn(f"concurrency of {name!r}: no step uses it", ("concurrency", name))


def walk_strings(value: Any, path: DataPath) -> Iterator[tuple[DataPath, str]]:
    """Every string inside ``value`` with its data path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from walk_strings(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_strings(v, (*path, i))


def _has_template(value: Any) -> bool:
    return any(has_template(s) for _, s in walk_strings(value, ()))


class _StepChecks:
    def __init__(self, report: Reporter, spec: WorkflowSpec) -> None:
        self.report = report
        self.spec = spec

    def _for_each(self, step: Step, expression: str) -> None:
        """``for_each`` must give a list: by the type of what it reads, or, for a constant
        expression (``"5"``, ``'{}'``, ``none``), by evaluating it."""
        path = self.report.step_path(step, "for_each")
        kind = template_type(self.spec, "{{ " + expression_source(expression) + " }}")
        try:
            reads = references(expression, expression=True)
        except TemplateError:
            return  # reported by the template checks
        if kind is None and not reads:
            try:
                with time_budget(_STATIC_SECONDS):
                    value = evaluate(expression, {})
            except TemplateError as exc:
                self.report.error(f"for_each: {exc}", path, step.id)
                return
            kind = json_type(value)
        if kind is not None and kind != "array":
            self.report.error(
                f"for_each needs a list, but {expression.strip()!r} is {kind}", path, step.id
            )

    def _resolve_action(self, uses: str, path: DataPath, step: str) -> ActionSpec | None:
        integration, _, name = uses.partition(".")
        try:
            action = get_action(integration, name)
        except IntegrationError as exc:
            self.report.error(exc.message, path, step)
            return None
        self.report.used.add(integration)
        return action

    def step(self, step: Step) -> None:
        sid = step.id
        target = step.target()
        if step.concurrency is not None and step.for_each is None:
            self.report.error(
                "concurrency applies to for_each steps only",
                self.report.step_path(step, "concurrency"),
                sid,
            )
        if step.for_each is not None:
            self._for_each(step, step.for_each)
        if target.kind == "capability":
            if target.text not in CAPABILITIES:
                prefixes = {c.split(".")[0] for c in CAPABILITIES}
                if target.left in prefixes:
                    verbs = ", ".join(
                        c for c in sorted(CAPABILITIES) if c.startswith(target.left + ".")
                    )
                    message = f"unknown capability {target.text!r} ({verbs} exist)"
                else:
                    names = [*load_catalog().names, *prefixes]
                    close = difflib.get_close_matches(target.left, names, n=3)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    message = (
                        f"unknown integration or capability {target.left!r} in "
                        f"uses {step.uses!r}{hint}"
                    )
                self.report.error(message, self.report.step_path(step, "uses"), sid)
                return
            self._capability_step(step, get_capability(target.text))
            return
        action = self._resolve_action(step.uses, self.report.step_path(step, "uses"), sid)
        if step.providers:
            self.report.error(
                "providers apply to capability steps only (use fallback)",
                self.report.step_path(step, "providers"),
                sid,
            )
        if action is None:
            return
        self._inputs(step, action.input, step.with_, ("with",), action.name)
        self._effects(step, action.read_only, action.idempotent, step.uses)
        primary_caps = set(load_catalog().get(target.left).capabilities)
        for i, fb in enumerate(step.fallback):
            path = self.report.step_path(step, "fallback", i)
            uses = fb.uses if "." in fb.uses else f"{fb.uses}.{target.right}"
            if uses == step.uses:
                self.report.error(f"fallback {uses!r} is the step's own action", path, sid)
                continue
            fb_action = self._resolve_action(uses, path, sid)
            if fb_action is None:
                continue
            other = uses.partition(".")[0]
            if other != target.left and not (
                primary_caps & set(load_catalog().get(other).capabilities)
            ):
                self.report.error(
                    f"fallback {other!r} shares no capability with {target.left!r}", path, sid
                )
            inputs = fb.with_ if fb.with_ is not None else step.with_
            where: DataPath = ("fallback", i, "with") if fb.with_ is not None else ("with",)
            self._inputs(step, fb_action.input, inputs, where, uses)
            if not fb_action.read_only and step.cache is not None:
                self.report.error(f"cache on side-effecting fallback {uses!r}", path, sid)

    def _capability_step(self, step: Step, cap: Capability) -> None:
        sid = step.id
        self._inputs(step, cap.input, step.with_, ("with",), cap.name)
        providers = {b.integration: b for b in cap.bindings}
        given = set(step.with_)
        chosen: list[str] = []
        for field_name, names in (
            ("providers", step.providers),
            ("fallback", [f.uses for f in step.fallback]),
        ):
            for i, name in enumerate(names):
                path = self.report.step_path(step, field_name, i)
                integration = name.partition(".")[0]
                if integration not in providers:
                    self.report.error(
                        f"{integration!r} does not provide {cap.name} (providers: "
                        f"{', '.join(providers)})",
                        path,
                        sid,
                    )
                    continue
                if "." in name and name != f"{integration}.{providers[integration].action}":
                    self.report.error(
                        f"{cap.name} on {integration} uses {providers[integration].action}, "
                        f"not {name.partition('.')[2]!r}",
                        path,
                        sid,
                    )
                fb_with = step.fallback[i].with_ if field_name == "fallback" else None
                missing = providers[integration].required - set(
                    fb_with if fb_with is not None else given
                )
                if missing:
                    self.report.error(
                        f"provider {integration!r} needs input(s) {', '.join(sorted(missing))}",
                        path,
                        sid,
                    )
                chosen.append(integration)
        if not step.providers:
            able = [b.integration for b in cap.bindings if b.required <= given]
            if not able:
                self.report.error(
                    f"no provider of {cap.name} can serve these inputs "
                    + "; ".join(
                        f"{b.integration} needs {', '.join(sorted(b.required))}"
                        for b in cap.bindings
                    ),
                    self.report.step_path(step, "with"),
                    sid,
                )
            chosen.extend(able)
        self.report.used.update(chosen)
        specs = cap.provider_actions(list(dict.fromkeys(chosen)))
        if specs:
            read_only = all(a.read_only for a in specs)
            idempotent = all(a.idempotent for a in specs)
            what = f"{cap.name} (via {', '.join(dict.fromkeys(chosen))})"
            self._effects(step, read_only, idempotent, what)

    def _effects(self, step: Step, read_only: bool, idempotent: bool, what: str) -> None:
        sid = step.id
        if step.cache is not None and not read_only:
            self.report.error(
                f"cache is for read-only actions; {what} has side effects",
                self.report.step_path(step, "cache"),
                sid,
            )
        if read_only and step.idempotency_key is not None:
            self.report.error(
                f"{what} is read-only: an idempotency_key means nothing here",
                self.report.step_path(step, "idempotency_key"),
                sid,
            )
        if not read_only and not idempotent:
            if step.retries:
                self.report.error(
                    f"retries on {what}, which is not idempotent, could duplicate its side "
                    "effect after a lost response (set retries: 0)",
                    self.report.step_path(step, "retries"),
                    sid,
                )
            else:
                self.report.warn(
                    f"{what} cannot be made idempotent; the client retries it only when the "
                    "request never reached the vendor",
                    self.report.step_path(step, "uses"),
                    sid,
                )

    # -- inputs against the action's model

    def _inputs(
        self,
        step: Step,
        model: type[BaseModel],
        inputs: Mapping[str, Any],
        where: DataPath,
        what: str,
    ) -> None:
        sid = step.id
        fields = model.model_fields
        names: dict[str, str] = {}
        for name, info in fields.items():
            names[name] = name
            if isinstance(info.validation_alias, str):
                names[info.validation_alias] = name
            if info.alias:
                names[info.alias] = name
        for key in inputs:
            if key not in names:
                hint = did_you_mean(key, fields)
                self.report.error(
                    f"{what} has no input {key!r}{hint}; inputs: {', '.join(fields)}",
                    self.report.step_path(step, *where, key),
                    sid,
                )
        given = {names[k] for k in inputs if k in names}
        missing = [n for n, info in fields.items() if info.is_required() and n not in given]
        if missing:
            self.report.error(
                f"{what} requires input(s) {', '.join(missing)}",
                self.report.step_path(step, *where)
                if inputs
                else self.report.step_path(step, "uses"),
                sid,
            )
        constants = {k: v for k, v in inputs.items() if k in names and not _has_template(v)}
        if constants and not (step.for_each and _has_template(inputs)):
            try:
                model.model_validate(constants)
            except PydanticValidationError as exc:
                for err in exc.errors():
                    loc = err["loc"]
                    if err["type"] == "missing" or (loc and loc[0] not in constants):
                        continue
                    if not loc and len(constants) < len([k for k in inputs if k in names]):
                        continue  # a model-level rule that templated values may satisfy
                    label = ".".join(str(p) for p in loc) or "inputs"
                    self.report.error(
                        f"{what} input {label}: {err['msg']}",
                        self.report.step_path(step, *where, *loc),
                        sid,
                    )
        schema = schema_of(model, "validation")
        for key, value in inputs.items():
            if key not in names or not isinstance(value, str):
                continue
            expected = types_of(schema.get("properties", {}).get(names[key], {}), schema)
            actual = template_type(self.spec, value)
            if expected and actual and not compatible(actual, expected):
                self.report.error(
                    f"{what} input {key!r} expects {'/'.join(sorted(expected))}, but "
                    f"{value.strip()!r} is {actual}",
                    self.report.step_path(step, *where, key),
                    sid,
                )
