"""The planner's result: a workflow spec document or a refusal, and how to compare plans.

A :class:`Plan` is what both the offline planner (:mod:`analytics.intelligence.planner`)
and the LLM path return; the generator previews, diffs and saves ``spec``. The helpers
:func:`actions_of` and :func:`edges_of` reduce a spec to what evaluation compares: the
actions it runs and the dependency edges between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integrations.catalog import load_catalog
from integrations.errors import UnknownCapabilityError
from junction.workflows.templating import step_references

__all__ = ["Plan", "actions_of", "edges_of"]


@dataclass(frozen=True)
class Plan:
    """A planned workflow, or why there is none.

    Attributes:
        spec: The workflow spec document, as a YAML spec file loads (None when refused).
        refusal: One line naming why nothing was generated (the words / the missing
            integration); None when ``spec`` is set.
        unmapped: Words of the request not mapped to anything.
        assumptions: What was filled in without being told.
        confidence: 0..1.
        source: ``"offline"`` or ``"llm"``.
    """

    spec: dict[str, Any] | None  # the workflow spec document, as a YAML spec file loads
    refusal: str | None  # one line naming why nothing was generated
    unmapped: tuple[str, ...] = ()  # words of the request not mapped to anything
    assumptions: tuple[str, ...] = ()  # what was filled in without being told
    confidence: float = 0.0  # 0..1
    source: str = "offline"  # "offline" | "llm"


def _steps(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list):
        return []
    return [s for s in spec["steps"] if isinstance(s, dict)]


def _action(step: dict[str, Any]) -> str:
    """``integration.action`` of a step; a capability step resolves to its first provider."""
    uses = str(step.get("uses", ""))
    left = uses.partition(".")[0]
    catalog = load_catalog()
    if left in catalog:
        return uses
    providers = step.get("providers") or []
    try:
        known = {p.integration: p.action for p in catalog.providers(uses)}
    except UnknownCapabilityError:  # keep the text: the validator names it
        return uses
    for name in providers:
        if name in known:
            return f"{name}.{known[name]}"
    first = next(iter(known.items()), None)
    return f"{first[0]}.{first[1]}" if first else uses


def actions_of(spec: dict[str, Any] | None) -> list[str]:
    """``integration.action`` of every step, in the spec's order.

    Capability steps (``notify.send``) count as their first listed provider's action
    (``providers: [webex]`` -> ``webex.create_message``), else the catalog's preferred one.
    """
    return [_action(s) for s in _steps(spec)]


def _fields(step: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The templated parts of a step and whether each is a bare expression."""
    out: list[tuple[Any, bool]] = [(step.get("with") or {}, False)]
    for name in ("when", "for_each"):
        if step.get(name) is not None:
            out.append((step[name], True))
    if step.get("idempotency_key") is not None:
        out.append((step["idempotency_key"], False))
    for fb in step.get("fallback") or []:
        if isinstance(fb, dict) and fb.get("with") is not None:
            out.append((fb["with"], False))
    return out


def edges_of(spec: dict[str, Any] | None) -> set[tuple[str, str]]:
    """Dependency edges between the steps' actions: ``(upstream, downstream)`` pairs.

    A step depends on the steps in its ``needs`` and on every step its templates read
    (``with``, ``when``, ``for_each``, ``idempotency_key``, fallback ``with``), as
    :meth:`junction.workflows.spec.WorkflowSpec.dependencies` computes them; steps are
    named by :func:`actions_of`'s ``integration.action``.
    """
    steps = _steps(spec)
    ids = {str(s.get("id")): _action(s) for s in steps}
    edges: set[tuple[str, str]] = set()
    for s in steps:
        sid = str(s.get("id"))
        needs = s.get("needs") or []
        found = {needs} if isinstance(needs, str) else {str(n) for n in needs}
        for value, expression in _fields(s):
            found |= step_references(value, expression=expression)
        for up in found:
            if up in ids and up != sid:
                edges.add((ids[up], ids[sid]))
    return edges
