"""The first check of a spec: its YAML against the schema (:class:`WorkflowSpec`).

Every schema problem is reported with its line and step (pydantic errors are located by
:func:`integrations.yamlconfig.problems_from_validation`); when some steps are malformed,
the valid ones still go through the later checks (:func:`check_schema` returns a partial
spec).
"""

from __future__ import annotations

from pydantic import ValidationError as PydanticValidationError

from integrations.yamlconfig import problems_from_validation
from junction.workflows.problems import Reporter, SpecError
from junction.workflows.spec import Parameter, Step, WorkflowSpec

__all__ = ["check_schema"]


def check_schema(report: Reporter) -> tuple[WorkflowSpec | None, bool]:
    """Validate the document against the schema, reporting duplicate keys and every error.

    Returns:
        The spec (partial when the schema failed: the valid parameters and steps, so the
        later checks still run; ``None`` when no step is valid) and whether it is complete.
    """
    doc = report.doc
    for path, line in doc.duplicates:
        step = _step_of(report, path)
        report.errors.append(SpecError(f"duplicate key {path[-1]!r}", line, step, report.source))
    try:
        spec = WorkflowSpec.model_validate(report.raw)
    except PydanticValidationError as exc:
        for problem in problems_from_validation(exc, doc, WorkflowSpec):
            parts = problem.field.split(".") if problem.field else []
            step = None
            if len(parts) >= 2 and parts[0] == "steps" and parts[1].isdigit():
                step = report.step_label(int(parts[1]))
                parts = parts[2:]
            where = ".".join(parts)
            message = f"{where}: {problem.message}" if where else problem.message
            report.errors.append(SpecError(message, problem.line, step, report.source))
        return _partial(report), False
    return spec, True


def _step_of(report: Reporter, path: tuple[str | int, ...]) -> str | None:
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        label = report.step_label(path[1])
        return None if label.startswith("#") else label
    return None


def _partial(report: Reporter) -> WorkflowSpec | None:
    """The valid parts, so later checks still run when some step is malformed."""
    raw = report.raw
    params: dict[str, Parameter] = {}
    raw_params = raw.get("parameters")
    if isinstance(raw_params, dict):
        for name, value in raw_params.items():
            try:
                params[str(name)] = Parameter.model_validate(value or {})
            except PydanticValidationError:
                continue
    steps: list[Step] = []
    for item in report.raw_steps:
        try:
            steps.append(Step.model_validate(item))
        except PydanticValidationError:
            continue
    if not steps:
        return None
    outputs = raw.get("outputs")
    return WorkflowSpec.model_construct(
        name=str(raw.get("name", "workflow")),
        parameters=params,
        steps=steps,
        outputs=outputs if isinstance(outputs, dict) else {},
        concurrency={},
    )
