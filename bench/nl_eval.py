"""Plain English to workflows: the offline planner against the request corpora.

Runs :func:`analytics.intelligence.planner.plan_workflow` over
``tests/data/nl_requests.yaml`` (the corpus the planner was tuned on) and
``tests/data/nl_requests_holdout.yaml`` (never used for tuning) and
``tests/data/nl_requests_fresh.yaml`` (batches each scored before any tuning on it) and
prints, per corpus and per category: the exact match rate of the action set, of the
dependency edges (compared by the order they imply: transitive closures), and the share
of outputs that are valid specs or clean refusals. ``--verbose`` lists every mistake.

    .venv/bin/python -m bench.nl_eval [--verbose] [--holdout-only] [--corpus NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from analytics.intelligence.plan import Plan, actions_of, edges_of
from analytics.intelligence.planner import plan_workflow
from integrations.yamlconfig import ConfigModel, load_model
from junction.workflows.validate import validate_text

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CORPORA = {
    "tuning": DATA / "nl_requests.yaml",
    "holdout": DATA / "nl_requests_holdout.yaml",
    "fresh": DATA / "nl_requests_fresh.yaml",
}


class Request(ConfigModel):
    """One request of a corpus and its expected answer."""

    text: str
    category: str
    batch: str = ""
    refuse: bool = False
    actions: list[str] = Field(default_factory=list)
    edges: list[str] = Field(default_factory=list)


class Corpus(ConfigModel):
    """A corpus file."""

    requests: list[Request]


def load_corpus(path: Path) -> list[Request]:
    """The requests of a corpus file (the one YAML loader)."""
    return load_model(Corpus, path).requests


def closure(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Every (a, b) with a path from a to b (self loops of repeated actions dropped)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        if a != b:
            succ[a].add(b)
    out: set[tuple[str, str]] = set()
    for start in list(succ):
        seen: set[str] = set()
        todo = list(succ[start])
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            todo.extend(succ.get(n, ()))
        out |= {(start, n) for n in seen if n != start}
    return out


@dataclass
class Outcome:
    """How the planner did on one request."""

    request: Request
    plan: Plan
    actions_ok: bool
    edges_ok: bool
    valid_or_refused: bool
    note: str


def _yaml(spec: dict[str, Any]) -> str:
    import yaml  # only here: the corpus loader is the project's

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(spec, Dumper=dumper, sort_keys=False, allow_unicode=True)


def judge(req: Request) -> Outcome:
    """Plan one request and compare with its expected answer."""
    plan = plan_workflow(req.text)
    if plan.spec is None:
        clean = bool(plan.refusal) and "\n" not in (plan.refusal or "")
        ok = req.refuse
        note = "" if ok else f"refused: {plan.refusal}"
        return Outcome(req, plan, ok, ok, clean, note)
    valid = validate_text(_yaml(plan.spec)).ok
    if req.refuse:
        return Outcome(
            req,
            plan,
            False,
            False,
            valid,
            f"planned {sorted(set(actions_of(plan.spec)))}, expected a refusal",
        )
    got_actions = set(actions_of(plan.spec))
    want_actions = set(req.actions)
    want_edges = {tuple(e.split(" -> ")) for e in req.edges}
    got_edges = edges_of(plan.spec)
    actions_ok = got_actions == want_actions
    edges_ok = actions_ok and closure(got_edges) == closure({(a, b) for a, b in want_edges})
    notes = []
    if not actions_ok:
        notes.append(
            f"actions +{sorted(got_actions - want_actions)} -{sorted(want_actions - got_actions)}"
        )
    elif not edges_ok:
        extra = closure(got_edges) - closure(set(want_edges))  # type: ignore[arg-type]
        missing = closure(set(want_edges)) - closure(got_edges)  # type: ignore[arg-type]
        notes.append(f"edges +{sorted(extra)} -{sorted(missing)}")
    return Outcome(req, plan, actions_ok, edges_ok, valid, "; ".join(notes))


def _rate(items: list[Outcome], attr: str) -> str:
    if not items:
        return "-"
    return f"{sum(getattr(o, attr) for o in items) / len(items):6.1%}"


def table(name: str, outcomes: list[Outcome]) -> list[str]:
    """Rows of the report for one corpus: per category, then the total."""
    rows = [f"{name:<22} {'n':>4} {'actions':>8} {'edges':>8} {'valid|refused':>14}"]
    by_cat: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_cat[o.request.category].append(o)
    for cat in sorted(by_cat):
        items = by_cat[cat]
        rows.append(
            f"  {cat:<20} {len(items):>4} {_rate(items, 'actions_ok'):>8} "
            f"{_rate(items, 'edges_ok'):>8} {_rate(items, 'valid_or_refused'):>14}"
        )
    by_batch: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.request.batch:
            by_batch[o.request.batch].append(o)
    for batch in sorted(by_batch):  # the fresh corpus: each batch was scored before tuning
        items = by_batch[batch]
        rows.append(
            f"  {'batch ' + batch:<20} {len(items):>4} {_rate(items, 'actions_ok'):>8} "
            f"{_rate(items, 'edges_ok'):>8} {_rate(items, 'valid_or_refused'):>14}"
        )
    rows.append(
        f"  {'TOTAL':<20} {len(outcomes):>4} {_rate(outcomes, 'actions_ok'):>8} "
        f"{_rate(outcomes, 'edges_ok'):>8} {_rate(outcomes, 'valid_or_refused'):>14}"
    )
    return rows


def evaluate(path: Path) -> list[Outcome]:
    """Judge every request of the corpus at ``path``."""
    return [judge(r) for r in load_corpus(path)]


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list every mistake")
    parser.add_argument("--holdout-only", action="store_true", help="only the held-back corpus")
    parser.add_argument(
        "--corpus", nargs="+", choices=list(CORPORA), help="only these corpora (default: all)"
    )
    args = parser.parse_args(argv)
    names = args.corpus or (["holdout"] if args.holdout_only else list(CORPORA))
    for name in names:
        started = time.perf_counter()
        outcomes = evaluate(CORPORA[name])
        elapsed = time.perf_counter() - started
        print("\n".join(table(f"{name} ({CORPORA[name].name})", outcomes)))
        per = elapsed / max(len(outcomes), 1) * 1000
        print(f"  {per:.0f} ms per request (planning, then validating again)\n")
        if args.verbose:
            for o in outcomes:
                if o.note or not o.valid_or_refused:
                    print(f"  [{o.request.category}] {o.request.text}\n      {o.note}")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
