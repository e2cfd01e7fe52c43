"""``for_each`` items: the list a step runs over, within ``JUNCTION_WORKFLOW_MAX_ITEMS``,
checked before the run starts where the expression reads only parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from junction.settings import Settings
from junction.workflows.spec import ParameterError, Step, WorkflowSpec
from junction.workflows.templating import TemplateError, evaluate, references, time_budget

__all__ = ["check_items", "for_each_items"]


def for_each_items(step: Step, context: Mapping[str, Any], settings: Settings) -> list[Any]:
    """The items of a ``for_each`` step: a list of at most ``JUNCTION_WORKFLOW_MAX_ITEMS``.

    Raises:
        TemplateError: The expression fails, gives no list, or too many items.
    """
    value = evaluate(step.for_each or "[]", context)
    if not isinstance(value, list | tuple):
        raise TemplateError(f"for_each gave {type(value).__name__}, not a list")
    limit = settings.workflow_max_items
    if len(value) > limit:
        raise TemplateError(
            f"for_each gave {len(value)} items, more than the limit of {limit} "
            "(JUNCTION_WORKFLOW_MAX_ITEMS); nothing was sent for this step"
        )
    return list(value)


_STATIC_ROOTS = frozenset({"params", "workflow"})


def _reads_only_params(expression: str) -> bool:
    try:
        refs = references(expression, expression=True)
    except TemplateError:
        return False
    return {r[0] for r in refs} <= _STATIC_ROOTS


def check_items(spec: WorkflowSpec, params: Mapping[str, Any], settings: Settings) -> None:
    """Before a run starts: each ``for_each`` that reads only parameters is within the cap.

    (``for_each: '["Engineering"] * params.n'`` with ``n=5000`` fails here, before the
    first step sends anything.) Steps whose ``when`` reads only parameters and is false
    are left out; expressions reading step outputs are checked when the step runs.

    Raises:
        ParameterError: Every step over the cap, named.
    """
    context = {"params": dict(params), "workflow": {"name": spec.name}}
    problems: list[str] = []
    for step in spec.steps:
        if step.for_each is None or not _reads_only_params(step.for_each):
            continue
        try:
            with time_budget(step.timeout or settings.workflow_step_timeout_seconds):
                static_when = step.when is not None and _reads_only_params(step.when)
                if static_when and not evaluate(step.when or "", context):
                    continue
                value = evaluate(step.for_each, context)
        except TemplateError:
            continue  # reported when the step runs, with the step's context
        limit = settings.workflow_max_items
        if isinstance(value, list | tuple) and len(value) > limit:
            problems.append(
                f"step {step.id!r}: for_each gives {len(value)} items, more than the limit "
                f"of {limit} (JUNCTION_WORKFLOW_MAX_ITEMS)"
            )
    if problems:
        raise ParameterError("; ".join(problems))
