"""Checks of a spec's dependency graph: cycles (named), steps that can never run (below a
cycle or a ``when`` that is always false), and read-only steps whose output nothing reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from integrations.errors import IntegrationError
from junction.clients import get_action
from junction.workflows.problems import Reporter
from junction.workflows.spec import WorkflowSpec
from junction.workflows.templating import step_references

__all__ = ["check_graph", "cycles"]

ALWAYS_FALSE = frozenset({"false", "no", "0", "none"})
"""``when`` values that can never be true."""


def check_graph(report: Reporter, spec: WorkflowSpec) -> None:
    """Report dependency cycles, steps that can never run, and dead read-only steps."""
    deps = spec.dependencies()
    found = cycles(deps, [s.id for s in spec.steps])
    in_cycle: set[str] = set()
    for cycle in found:
        in_cycle.update(cycle)
        report.error(
            "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
            report.step_path(cycle[0], "id"),
            cycle[0],
        )
    never = {
        s.id
        for s in spec.steps
        if s.when is not None and str(s.when).strip().lower() in ALWAYS_FALSE
    }
    blocked = in_cycle | never
    changed = True
    down: set[str] = set()
    while changed:
        changed = False
        for sid, ups in deps.items():
            if sid not in blocked and ups & blocked:
                blocked.add(sid)
                down.add(sid)
                changed = True
    for sid in sorted(down, key=lambda s: report.index.get(s, 0)):
        culprit = sorted(deps[sid] & blocked)
        report.error(
            f"unreachable: depends on {', '.join(culprit)}, which can never complete",
            report.step_path(sid, "id"),
            sid,
        )
    read: set[str] = set()
    for ups in deps.values():
        read |= ups
    for value in spec.outputs.values():
        read |= step_references(value)
    for step in spec.steps:
        if step.id in read:
            continue
        target = step.target()
        if target.kind != "action":
            continue
        try:
            read_only = get_action(target.left, target.right).read_only
        except IntegrationError:
            continue
        if read_only:
            report.warn(
                "read-only step whose output no step or output reads (dead step)",
                report.step_path(step, "id"),
                step.id,
            )


def cycles(deps: Mapping[str, set[str]], order: list[str]) -> list[list[str]]:
    """Each elementary cycle found by DFS, once (rotated to start at its first step).

    Iterative, so a long chain of steps cannot exhaust Python's recursion limit.
    """
    pos = {sid: i for i, sid in enumerate(order)}
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    color: dict[str, int] = {}  # 1: on the current path, 2: done

    def ups(node: str) -> Iterator[str]:
        return iter(sorted((d for d in deps.get(node, set()) if d in pos), key=pos.__getitem__))

    for root in order:
        if color.get(root):
            continue
        color[root] = 1
        path = [root]
        stack = [ups(root)]
        while stack:
            up = next(stack[-1], None)
            if up is None:
                stack.pop()
                color[path.pop()] = 2
            elif not color.get(up):
                color[up] = 1
                path.append(up)
                stack.append(ups(up))
            elif color[up] == 1:
                cycle = list(reversed(path[path.index(up) :]))  # run order
                key = frozenset(cycle)
                if key not in seen_sets:
                    seen_sets.add(key)
                    start = min(cycle, key=pos.__getitem__)
                    i = cycle.index(start)
                    found.append(cycle[i:] + cycle[:i])
    return found
