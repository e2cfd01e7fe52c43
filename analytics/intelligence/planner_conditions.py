"""The tests of a condition clause ("if it fails on main", "once JUN-5 is done"), as the
``when:`` expressions of the steps it governs (a helper of
:mod:`analytics.intelligence.planner_interpret`).

Public API: :func:`condition_tests`.
"""

from __future__ import annotations

from typing import Any

from analytics.intelligence.planner_build import Planned
from analytics.intelligence.planner_parse import Clause

__all__ = ["condition_tests"]


def condition_tests(
    c: Clause,
    ops: list[Planned],
    negate: bool,
    latest_pipe: Planned | None,
    fails: bool,
    params: dict[str, dict[str, Any]],
) -> tuple[list[tuple[str, Planned | None]], list[str]]:
    """The ``when:`` tests of condition clause ``c`` and what was assumed.

    Args:
        c: The condition clause.
        ops: The reads planned for it (the first is what it tests).
        negate: The clause says "unless".
        latest_pipe: The latest step that gives a pipeline (for a branch test).
        fails: The request speaks of a failure.
        params: The spec's parameters, added to (a branch or a severity).

    Returns:
        ``(expression, step)`` pairs (``{sid}`` stands for the step's id) and assumptions.
    """
    notes: list[str] = []
    parts: list[tuple[str, Planned | None]] = []
    read = ops[0] if ops else None
    pipe = read if read and "pipeline" in read.op.produces else latest_pipe
    if read and read.op.action == "gitlab.get_pipeline" and (c.has("fail") or fails):
        parts.append(("steps.{sid}.output.status == 'failed'", read))
    if (c.has("branch") or c.has("feature_branch")) and pipe is not None:
        params.setdefault(
            "default_branch",
            {"type": "string", "default": "main", "description": "The default branch."},
        )
        equal = c.has("branch") != negate
        parts.append(
            (
                f"steps.{{sid}}.output.ref {'==' if equal else '!='} params.default_branch",
                pipe,
            )
        )
    if c.has("severity"):
        params.setdefault(
            "severity",
            {
                "type": "string",
                "default": "critical",
                "enum": ["critical", "warning", "info"],
                "description": "The alert's severity.",
            },
        )
        parts.append((f"params.severity {'!=' if negate else '=='} 'critical'", None))
    if read is not None and not parts:
        states = c.words("state")
        if read.op.action == "workday.get_worker" and c.has("noun", "leaver"):
            parts.append(("steps.{sid}.output.termination_date is not none", read))
        elif read.op.action == "jira.get_issue" and states:
            test = "==" if states[-1] == "closed" else "!="
            parts.append((f"steps.{{sid}}.output.fields.status.name {test} 'Done'", read))
        elif read.op.list_expr and not read.quantified:
            expr = read.op.list_expr.replace("output", "steps.{sid}.output")
            parts.append((f"{expr} | length > 0", read))
        else:  # the test itself is not mapped: the steps wait for the read to succeed
            parts.append(("steps.{sid}.status == 'ok'", read))
            notes.append(f"{c.text!r} is checked only as: the read succeeds")
    return parts, notes
