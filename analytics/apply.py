"""Applying recommendations to workflow specs: edit, validate, keep the previous revision.

:func:`apply_recommendations` edits the spec YAML (ruamel.yaml round trip: comments and
key order survive), validates the result with :func:`junction.workflows.validate.
validate_text` and writes it only when it is valid (a validator that fails to decide
counts as a rejection), keeps the previous text as ``.history/<file stem>.rev<N>.yaml``
next to the spec, and returns the unified diff. Specs are read through the bounded YAML
loader first: the round-trip parser has no size or alias limits.
"""

from __future__ import annotations

import difflib
import io
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from analytics.recommend import Recommendation
from integrations.yamlconfig import ConfigError, read_yaml
from junction.workflows.validate import validate_text

log = logging.getLogger(__name__)


@dataclass
class AppliedSpec:
    """The result of applying changes to one spec file.

    Attributes:
        spec_path: The file edited.
        revision_path: Where the previous text was kept.
        diff: Unified diff, previous -> new.
        applied: Ids of the recommendations written.
    """

    spec_path: Path
    revision_path: Path | None
    diff: str
    applied: list[str] = field(default_factory=list)


@dataclass
class ApplyResult:
    """What :func:`apply_recommendations` did.

    Attributes:
        specs: One entry per spec file changed (or that would change, in a dry run).
        skipped: ``(recommendation id, reason)`` for each one not applied.
        dry_run: Nothing was written.
    """

    specs: list[AppliedSpec] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def applied(self) -> list[str]:
        """Ids of every recommendation applied."""
        return [i for s in self.specs for i in s.applied]

    @property
    def diff(self) -> str:
        """All diffs, concatenated."""
        return "".join(s.diff for s in self.specs)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the specs changed (with their diffs) and what was skipped."""
        return {
            "dry_run": self.dry_run,
            "specs": [
                {
                    "spec": str(s.spec_path),
                    "revision": None if s.revision_path is None else str(s.revision_path),
                    "applied": list(s.applied),
                    "diff": s.diff,
                }
                for s in self.specs
            ],
            "skipped": [{"id": i, "reason": why} for i, why in self.skipped],
        }


def _yaml() -> YAML:
    y = YAML()  # round-trip: comments, key order and quoting survive
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 100
    return y


def _flow(value: Any) -> Any:
    """Short mappings/lists in YAML flow style (``{ttl: 5m}``), as spec authors write them."""
    if isinstance(value, dict):
        m = CommentedMap(value)
        m.fa.set_flow_style()
        return m
    if isinstance(value, list):
        s = CommentedSeq(value)
        s.fa.set_flow_style()
        return s
    return value


def next_revision(spec_path: Path) -> Path:
    """``.history/<stem>.rev<N>.yaml`` beside the spec, N one above the highest kept."""
    history = spec_path.parent / ".history"
    numbers = [
        int(m.group(1))
        for p in history.glob(f"{spec_path.stem}.rev*.yaml")
        if (m := re.fullmatch(rf"{re.escape(spec_path.stem)}\.rev(\d+)\.yaml", p.name))
    ]
    return history / f"{spec_path.stem}.rev{max(numbers, default=0) + 1}.yaml"


def _validate(text: str, source: str) -> str | None:
    """Why the workflow validator rejects ``text`` (``None``: it is a valid spec).

    An edit is written only when this returns ``None``: a validator that fails to
    decide counts as a rejection, never as a pass.
    """
    try:
        result = validate_text(text, source=source)
    except Exception as exc:  # the edit is not written either way; say why
        log.warning("could not validate %s after the edit: %s", source, exc)
        return f"the validator failed: {type(exc).__name__}: {exc}"
    if result.errors:
        return "; ".join(e.message for e in result.errors[:3])
    return None


def apply_recommendations(
    recommendations: Iterable[Recommendation],
    *,
    threshold: float = 0.90,
    accept: Iterable[str] | None = None,
    dry_run: bool = False,
) -> ApplyResult:
    """Write recommendations' changes into their workflow specs.

    Without ``accept`` only recommendations with ``confidence >= threshold`` are applied
    (the automatic mode); ``accept`` names the ids a person accepted, applied whatever
    their confidence (and nothing else is). Advisory recommendations (no change) and
    changes whose step no longer has the recorded old value are skipped with a reason.

    Args:
        recommendations: From :func:`recommend`.
        threshold: Confidence needed in automatic mode.
        accept: Ids accepted by a person.
        dry_run: Compute the diffs, write nothing.

    Returns:
        Per spec file: the revision kept and the diff; plus what was skipped and why.
    """
    accepted = None if accept is None else set(accept)
    result = ApplyResult(dry_run=dry_run)
    by_path: dict[str, list[Recommendation]] = {}
    for rec in recommendations:
        if accepted is not None and rec.id not in accepted:
            continue
        if rec.change is None:
            result.skipped.append((rec.id, "advisory: no spec change to apply"))
        elif accepted is None and rec.confidence < threshold:
            result.skipped.append(
                (rec.id, f"confidence {rec.confidence:.2f} below threshold {threshold:.2f}")
            )
        else:
            by_path.setdefault(rec.change.spec_path, []).append(rec)
    if accepted is not None:
        known = {r.id for recs in by_path.values() for r in recs} | {i for i, _ in result.skipped}
        result.skipped += [(i, "unknown recommendation id") for i in sorted(accepted - known)]
    for path_text, recs in by_path.items():
        _apply_file(Path(path_text), recs, result, dry_run)
    return result


def _apply_file(path: Path, recs: list[Recommendation], result: ApplyResult, dry: bool) -> None:
    rt = _yaml()
    try:
        # The bounded loader first: the round-trip parser has no size or alias limits.
        read_yaml(path)
        before = path.read_text(encoding="utf-8")
        doc = rt.load(before)
    except (ConfigError, OSError, YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.skipped += [(r.id, f"cannot read {path}: {reason}") for r in recs]
        return
    steps = {str(s.get("id")): s for s in doc.get("steps") or [] if hasattr(s, "get")}
    done: list[str] = []
    for rec in recs:
        change = rec.change
        assert change is not None
        step = steps.get(change.step)
        if step is None:
            result.skipped.append((rec.id, f"step {change.step!r} not in {path.name}"))
            continue
        current = step.get(change.field)
        plain = _plain(current)
        if plain != _plain(change.old) and not (plain is None and change.old is None):
            result.skipped.append(
                (rec.id, f"{change.step}.{change.field} is now {plain!r}, not {change.old!r}")
            )
            continue
        if change.new is None:
            step.pop(change.field, None)
        else:
            step[change.field] = _flow(change.new)
        done.append(rec.id)
    if not done:
        return
    buf = io.StringIO()
    rt.dump(doc, buf)
    after = buf.getvalue()
    problem = _validate(after, str(path))
    if problem is not None:
        result.skipped += [(i, f"the edited spec would be invalid: {problem}") for i in done]
        return
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{path} (previous)",
            tofile=str(path),
        )
    )
    revision: Path | None = None
    if not dry:
        revision = next_revision(path)
        revision.parent.mkdir(parents=True, exist_ok=True)
        revision.write_text(before)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(after)
        os.replace(tmp, path)  # readers see the old or the new spec, never half of one
    result.specs.append(AppliedSpec(path, revision, diff, done))


def _plain(value: Any) -> Any:
    """ruamel containers -> plain dict/list for comparison."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["AppliedSpec", "ApplyResult", "apply_recommendations", "next_revision"]
