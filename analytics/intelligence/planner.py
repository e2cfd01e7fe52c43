"""The offline planner: a plain-English (German, Spanish, French) request to a validated spec.

No network and no model: the request is read with a lexicon
(:mod:`analytics.intelligence.planner_parse`), refused when it must be
(:mod:`analytics.intelligence.planner_safety`), each clause is mapped to catalog actions
(:mod:`analytics.intelligence.planner_interpret`), their inputs and dependencies are
filled (:mod:`analytics.intelligence.planner_build`), and the spec goes through the same
validator as a hand-written one
(:func:`junction.workflows.validate.validate_text`). The result is always a valid spec
or a refusal of one line naming why: an integration Junction has no actions for, a URL,
secrets, a destructive bulk request, prompt injection, or words it could not map.

Clauses map to actions like this: the integrations a clause names (or that its verbs,
nouns and entities imply: "summarize" -> OpenAI, "#ops" -> Slack, "JUN-7" -> Jira) each
get their best-scoring action for the clause's verbs and nouns; integrations only implied
by a noun add a read ("the job log" -> ``gitlab.get_job_log``). A clause starting with
"if", "when", "unless" is a condition: its reads run first and its test becomes the
``when:`` of the steps it governs ("when a GitLab pipeline fails" -> ``gitlab.get_pipeline``
and ``when: steps.pipeline.output.status == 'failed'``). "then" starts a new stage; "for
each" fans the following steps out over a list (``for_each``).

Public API: :func:`plan_workflow`, :data:`MAX_REQUEST_CHARS`, :data:`MAX_STEPS`.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from analytics.intelligence.lexicon import load_lexicon
from analytics.intelligence.plan import Plan
from analytics.intelligence.planner_build import Planned, build_spec
from analytics.intelligence.planner_interpret import Interpreter
from analytics.intelligence.planner_parse import Reading, read_request
from analytics.intelligence.planner_safety import quote as _quote
from analytics.intelligence.planner_safety import safety
from integrations.catalog import Catalog, load_catalog
from junction.workflows.validate import validate_text

__all__ = ["MAX_REQUEST_CHARS", "MAX_STEPS", "plan_workflow"]

MAX_REQUEST_CHARS = 4000
"""Longest request the planner reads (a workflow is a few sentences)."""

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when installed

MAX_STEPS = 40
"""Most steps a planned workflow may have (more is a request to split it)."""


def _refuse(message: str, reading: Reading | None = None) -> Plan:
    unmapped = tuple(reading.unmapped) if reading else ()
    return Plan(spec=None, refusal=message, unmapped=unmapped, confidence=0.0)


def _name(planned: list[Planned], name: str | None) -> str:
    if name:
        return name
    integrations = list(dict.fromkeys(p.op.integration for p in planned))
    return ("_".join(integrations)[:48] or "generated") + "_workflow"


def plan_workflow(text: str, catalog: Catalog | None = None, *, name: str | None = None) -> Plan:
    """Plan a workflow from a plain-English (German, Spanish, French) request, offline.

    Args:
        text: The request ("when a GitLab pipeline fails, summarize the job log with
            OpenAI, post it to Webex and open a Jira issue").
        catalog: The integration catalog (default: the packaged one).
        name: The spec's name (default: from the integrations it uses).

    Returns:
        A :class:`Plan` whose spec passed the workflow validator, or a refusal of one line.
    """
    catalog = catalog or load_catalog()
    if not isinstance(text, str) or not text.strip():
        return _refuse("refused: the request is empty; describe the workflow in a sentence or two")
    if len(text) > MAX_REQUEST_CHARS:
        return _refuse(
            f"refused: the request is {len(text):,} characters; at most {MAX_REQUEST_CHARS:,}"
        )
    if name is not None and not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        return _refuse(f"refused: name {name[:40]!r} must be lower_snake_case")
    lex = load_lexicon()
    reading = read_request(text, lex)
    why = safety(text, reading, lex, catalog)
    if why:
        return _refuse(why, reading)
    interp = Interpreter(lex, reading, text)
    interp.run()
    if not interp.planned:
        words = (
            reading.unmapped
            or [t.text for c in reading.clauses for t in c.tokens if t.meanings][:6]
        )
        return _refuse(
            f"refused: no catalog action matches the request ({_quote(words) or 'nothing'})",
            reading,
        )
    if interp.unplanned:
        return _refuse(
            f"refused: could not map {_quote(interp.unplanned)} to a catalog action", reading
        )
    built = build_spec(lex, interp.planned, text, interp.globals, interp.params)
    if len(built.spec["steps"]) > MAX_STEPS:
        count = len(built.spec["steps"])
        return _refuse(
            f"refused: the request plans {count} steps, at most {MAX_STEPS}; split it", reading
        )
    spec: dict[str, Any] = {
        "name": _name(interp.planned, name),
        "description": re.sub(r"\s+", " ", text.replace("{", "(").replace("}", ")")).strip()[:200],
        "version": "1",
    }
    if built.spec["parameters"]:
        spec["parameters"] = built.spec["parameters"]
    spec["steps"] = built.spec["steps"]
    dumped = yaml.dump(spec, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
    result = validate_text(dumped, source="<generated>")
    if not result.ok:
        first = result.errors[0]
        return _refuse(
            f"refused: the planned workflow does not validate ({first.message})", reading
        )
    assumptions = interp.assumptions + built.assumptions
    assumptions += [f"read {a!r} as {b!r}" for a, b in reading.corrected]
    confidence = 0.95 - 0.05 * len(reading.corrected) - 0.1 * bool(reading.unmapped)
    confidence -= 0.02 * min(len(assumptions), 10)
    return Plan(
        spec=spec,
        refusal=None,
        unmapped=tuple(reading.unmapped),
        assumptions=tuple(dict.fromkeys(assumptions)),
        confidence=round(max(0.05, min(confidence, 0.99)), 2),
        source="offline",
    )
