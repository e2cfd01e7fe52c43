"""Checks of a spec's templates: syntax and sandbox rules, the names they read (parameters,
steps and their fields, ``item`` outside ``for_each``), self references, ``needs``, and the
``outputs`` (which must guard reads of steps that may be skipped).
"""

from __future__ import annotations

from typing import Any

from integrations.yamlconfig import DataPath, did_you_mean
from junction.workflows.check_graph import ALWAYS_FALSE
from junction.workflows.check_steps import walk_strings
from junction.workflows.problems import Reporter
from junction.workflows.reftypes import output_schema
from junction.workflows.spec import Step, WorkflowSpec
from junction.workflows.templating import ROOTS, TemplateError, check_syntax, references

__all__ = ["check_outputs", "check_templates"]

STEP_FIELDS = frozenset({"output", "status", "provider"})
"""What ``steps.<id>`` has."""

_EXPRESSION_FIELDS = frozenset({"when", "for_each"})


def _field_path(key: str) -> DataPath:
    if key.startswith("fallback["):
        index = int(key[len("fallback[") : key.index("]")])
        return ("fallback", index, "with")
    return (key,)


def check_templates(report: Reporter, spec: WorkflowSpec) -> None:
    """Check every template: syntax, sandbox rules, names, parameters, steps; ``needs``."""
    ids = {s.id for s in spec.steps}
    for step in spec.steps:
        for key, value in spec.template_fields(step).items():
            path = _field_path(key)
            _check_template_value(
                report,
                spec,
                step,
                value,
                report.step_path(step, *path),
                ids,
                key in _EXPRESSION_FIELDS,
            )
        for i, name in enumerate(step.needs):
            npath = report.step_path(step, "needs", i)
            if name == step.id:
                report.error("needs itself", npath, step.id)
            elif name not in ids and name not in report.raw_ids:
                hint = did_you_mean(name, ids)
                report.error(f"needs unknown step {name!r}{hint}", npath, step.id)
        if step.when is not None and str(step.when).strip().lower() in ALWAYS_FALSE:
            report.error(
                "when is always false: the step (and what depends on it) never runs",
                report.step_path(step, "when"),
                step.id,
            )


def _check_template_value(
    report: Reporter,
    spec: WorkflowSpec,
    step: Step | None,
    value: Any,
    path: DataPath,
    ids: set[str],
    expression: bool,
) -> None:
    sid = step.id if step else None
    for sub, text in walk_strings(value, path):
        try:
            if expression:
                check_syntax(text, expression=True)
            refs = references(text, expression=expression)
        except TemplateError as exc:
            report.error(str(exc), sub, sid)
            continue
        for ref in sorted(refs):
            _check_reference(report, spec, step, ref, sub, ids)


def _check_reference(
    report: Reporter,
    spec: WorkflowSpec,
    step: Step | None,
    ref: tuple[str, ...],
    path: DataPath,
    ids: set[str],
) -> None:
    sid = step.id if step else None
    root = ref[0]
    shown = ".".join(ref)
    if root == "loop":
        return  # jinja's loop variable inside {% for %}
    if root not in ROOTS or root == "inputs":
        allowed = ", ".join(sorted(ROOTS - {"inputs"}))
        report.error(
            f"unknown name {root!r} in template ({shown}); available: {allowed}", path, sid
        )
        return
    if root in {"item", "index"} and (step is None or step.for_each is None):
        report.error(f"{root!r} is only defined in for_each steps", path, sid)
        return
    if root == "params":
        if len(ref) < 2:
            return
        if ref[1] not in spec.parameters:
            hint = did_you_mean(ref[1], spec.parameters)
            report.error(f"unknown parameter {ref[1]!r} in {shown}{hint}", path, sid)
        return
    if root == "workflow" and len(ref) > 1 and ref[1] != "name":
        report.error(f"unknown field {shown!r} (workflow has: name)", path, sid)
    if root == "run" and len(ref) > 1 and ref[1] != "id":
        report.error(f"unknown field {shown!r} (run has: id)", path, sid)
    if root != "steps":
        return
    if len(ref) < 2:
        report.error("steps must be followed by a step id (steps.<id>.output)", path, sid)
        return
    other = ref[1]
    if other not in ids:
        if other in report.raw_ids:
            return  # reported by the schema check
        hint = did_you_mean(other, ids)
        report.error(f"unknown step {other!r} in {shown}{hint}", path, sid)
        return
    if step is not None and other == step.id:
        report.error(f"step reads its own {'.'.join(ref[2:]) or 'result'} ({shown})", path, sid)
        return
    if len(ref) >= 3 and ref[2] not in STEP_FIELDS:
        report.error(
            f"unknown field {ref[2]!r} of step {other!r} in {shown} "
            f"(a step has: {', '.join(sorted(STEP_FIELDS))})",
            path,
            sid,
        )
        return
    if len(ref) >= 4 and ref[2] == "output":
        missing = output_schema(spec, other, ref[3:])
        if isinstance(missing, str):
            report.warn(
                f"{shown}: the output of {spec.step(other).uses} declares no field {missing!r}",
                path,
                sid,
            )


# -- the graph


def check_outputs(report: Reporter, spec: WorkflowSpec) -> None:
    """Check the ``outputs`` templates, and that they guard reads of steps that may not run."""
    ids = {s.id for s in spec.steps}
    deps = spec.dependencies()
    optional = {s.id for s in spec.steps if s.when is not None or s.continue_on_error}
    changed = True
    while changed:  # dependents of a step that may not run may not run either
        before = len(optional)
        optional |= {sid for sid, ups in deps.items() if ups & optional}
        changed = len(optional) != before
    for name, value in spec.outputs.items():
        _check_template_value(report, spec, None, value, ("outputs", name), ids, False)
        try:
            refs = references(value)
        except TemplateError:
            continue
        guarded = {r[1] for r in refs if len(r) >= 3 and r[0] == "steps" and r[2] == "status"}
        for ref in sorted(refs):
            reads_output = len(ref) >= 4 and ref[0] == "steps" and ref[2] == "output"
            if reads_output and ref[1] in optional and ref[1] not in guarded:
                report.warn(
                    f"output {name!r} reads {'.'.join(ref)}, but step {ref[1]!r} may be "
                    f"skipped (guard with steps.{ref[1]}.status == 'ok')",
                    ("outputs", name),
                )
