"""Generate a workflow spec from plain words: a preview, a diff, and an optional save.

:func:`generate` is what ``junction workflow generate``, ``POST /api/v2/workflows/enhanced/
intelligence/generate`` and the ``generate-workflow`` deployment call:

1. It refuses at once, in one line, when ``AI_WORKFLOW_ENABLED`` is off or the description
   is empty, too long (``JUNCTION_AI_WORKFLOW_MAX_CHARS``) or the name is not a spec name
   (:class:`GenerateError`).
2. It plans: the offline planner (:func:`~analytics.intelligence.planner.plan_workflow`)
   by default, the LLM (:func:`~analytics.intelligence.llm.generate_with_llm`) when
   ``JUNCTION_LLM_MODEL`` is set.
3. Every spec goes through the same validator as a hand-written one, and through the
   safety check (no URL outside the integrations' configured base URLs, no reference to
   the environment); an invalid or unsafe spec is refused naming its first problem.
4. The result is a preview: the YAML, the unified diff against an existing spec of the
   same name (in the spec folder, else a built-in), the confidence and assumptions.
   ``save`` writes it into the spec folder as a new revision: the previous text is kept as
   ``.history/<name>.rev<N>.yaml`` (:func:`analytics.apply.next_revision`, the mechanism
   applied recommendations use). Nothing runs.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analytics.intelligence.llm import (
    allowed_origins,
    generate_with_llm,
    llm_config,
    safety_problems,
    spec_yaml,
)
from analytics.intelligence.plan import Plan
from analytics.intelligence.planner import plan_workflow
from integrations.catalog import Catalog
from junction.settings import Settings
from junction.workflows.builtins import builtin_spec_dir, builtin_specs
from junction.workflows.problems import SpecError, ValidationResult
from junction.workflows.validate import validate_text

__all__ = [
    "GenerateError",
    "GenerateResult",
    "check_request",
    "default_spec_dir",
    "finish",
    "generate",
    "save_result",
]

MAX_BYTES = 1_048_576
"""A description of this many UTF-8 bytes or more is refused whatever the setting says."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
FLAG = "AI_WORKFLOW_ENABLED"


class GenerateError(ValueError):
    """The request cannot be planned (flag off, bad description or name): one line.

    Attributes:
        field: What was wrong (``text``, ``name``, ``flag``).
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class GenerateResult:
    """A generated spec's preview (or why there is none).

    Attributes:
        plan: The planner's (or the LLM's) plan.
        name: The spec's name (``None`` when refused before one was chosen).
        yaml: The spec as YAML (``None`` when refused).
        validation: The validator's result on ``yaml``.
        unsafe: Safety problems (URLs outside the catalog's base URLs, the environment).
        existing: The spec of the same name the diff compares with.
        diff: Unified diff existing -> generated (``None`` without an existing spec).
        saved: Where the spec was written (``save`` only).
        revision: Where the previous text was kept (``save`` over an existing file).
    """

    plan: Plan
    name: str | None = None
    yaml: str | None = None
    validation: ValidationResult | None = None
    unsafe: list[str] = field(default_factory=list)
    existing: Path | None = None
    diff: str | None = None
    saved: Path | None = None
    revision: Path | None = None

    @property
    def ok(self) -> bool:
        """A spec was generated, is safe and valid."""
        return (
            self.plan.spec is not None
            and not self.unsafe
            and self.validation is not None
            and self.validation.ok
        )

    @property
    def refusal(self) -> str | None:
        """Why there is no usable spec, in one line (``None`` when :attr:`ok`)."""
        if self.plan.refusal:
            return _one_line(self.plan.refusal)
        if self.unsafe:
            return f"the generated spec is unsafe: {_one_line(self.unsafe[0])}"
        if self.validation is not None and self.validation.errors:
            first = self.validation.errors[0]
            who = f"step '{first.step}': " if first.step else ""
            return f"the generated spec is invalid: {who}{_one_line(first.message)}"
        if not self.ok:
            return "nothing could be generated from the description"
        return None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the CLI's ``--json``, the API's body)."""
        validation = self.validation
        return {
            "ok": self.ok,
            "refusal": self.refusal,
            "name": self.name,
            "source": self.plan.source,
            "confidence": round(float(self.plan.confidence), 3),
            "assumptions": list(self.plan.assumptions),
            "unmapped": list(self.plan.unmapped),
            "spec": self.plan.spec if self.ok else None,
            "yaml": self.yaml,
            "validation": None
            if validation is None
            else {
                "ok": validation.ok,
                "errors": [_problem(e) for e in validation.errors],
                "warnings": [_problem(e) for e in validation.warnings],
            },
            "unsafe": list(self.unsafe),
            "existing": None if self.existing is None else str(self.existing),
            "diff": self.diff,
            "saved": None if self.saved is None else str(self.saved),
            "revision": None if self.revision is None else str(self.revision),
        }


def _problem(error: SpecError) -> dict[str, Any]:
    return {"line": error.line, "step": error.step, "message": error.message}


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def default_spec_dir(settings: Settings) -> Path:
    """The user's spec folder: ``JUNCTION_ANALYTICS_SPEC_DIR``, else ``<home>/specs``
    (never the built-in specs, which are package data)."""
    return settings.analytics_spec_dir or settings.home / "specs"


def check_request(text: object, settings: Settings, name: object = None) -> str:
    """The description, stripped, when generation may proceed.

    Raises:
        GenerateError: The flag is off, or the description or the name is unusable (one
            line naming which).
    """
    if not settings.ai_workflow_enabled:
        raise GenerateError(
            f"workflow generation is disabled ({FLAG}=false); set {FLAG}=true to use it",
            "flag",
        )
    if not isinstance(text, str):
        raise GenerateError("text: the description must be a string", "text")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size >= MAX_BYTES:
        raise GenerateError(f"text: the description is {size:,} bytes; 1 MB is the limit", "text")
    stripped = text.strip()
    if not stripped:
        raise GenerateError("text: the description is empty; say what the workflow does", "text")
    limit = settings.ai_workflow_max_chars
    if len(stripped) > limit:
        raise GenerateError(
            f"text: the description is {len(stripped):,} characters; at most {limit:,} "
            "(JUNCTION_AI_WORKFLOW_MAX_CHARS)",
            "text",
        )
    if "\x00" in stripped:
        raise GenerateError("text: the description contains a NUL character", "text")
    if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise GenerateError(
            f"name: {str(name)[:80]!r} is not a spec name (lowercase letters, digits, '_' "
            "and '-', starting with a letter, at most 64)",
            "name",
        )
    return stripped


def _existing(name: str, spec_dir: Path) -> Path | None:
    mine = spec_dir / f"{name}.yaml"
    if mine.is_file():
        return mine
    return builtin_specs().get(name)


def _diff(existing: Path, text: str) -> str:
    before = existing.read_text(encoding="utf-8", errors="replace")
    where = "built-in" if existing.parent == builtin_spec_dir() else "spec folder"
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{existing.name} ({where})",
            tofile=f"{existing.name} (generated)",
        )
    )


def _save(text: str, target: Path) -> Path | None:
    """Write ``text`` to ``target``; the previous text (if any) kept as a revision."""
    # Function-level: analytics.apply imports analytics.recommend (pandas, scipy: seconds),
    # which a preview never needs.
    from analytics.apply import next_revision

    target.parent.mkdir(parents=True, exist_ok=True)
    revision: Path | None = None
    if target.is_file():
        revision = next_revision(target)
        revision.parent.mkdir(parents=True, exist_ok=True)
        revision.write_text(target.read_text(encoding="utf-8"), encoding="utf-8")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)  # readers see the old or the new spec, never half of one
    return revision


def generate(
    text: str,
    settings: Settings,
    *,
    name: str | None = None,
    save: bool = False,
    specs_dir: Path | None = None,
    catalog: Catalog | None = None,
) -> GenerateResult:
    """Generate a workflow spec from ``text``, validate it, and preview (or save) it.

    Args:
        text: What the workflow should do, in plain words.
        settings: Settings (the flag, the limits, the LLM, the spec folder).
        name: The spec's name (default: the planner's).
        save: Write a valid spec into ``specs_dir`` as a new revision.
        specs_dir: The spec folder (default: :func:`default_spec_dir`).
        catalog: The integration catalog (default: the installed one).

    Returns:
        The preview; ``result.refusal`` says in one line why there is no spec.

    Raises:
        GenerateError: The flag is off or the description or name is unusable.
    """
    stripped = check_request(text, settings, name)
    config = llm_config(settings)
    if config is None:
        plan = plan_workflow(stripped, catalog, name=name)
    else:
        plan = asyncio.run(generate_with_llm(stripped, settings, name=name, config=config))
    return finish(plan, settings, name=name, save=save, specs_dir=specs_dir)


def finish(
    plan: Plan,
    settings: Settings,
    *,
    name: str | None = None,
    save: bool = False,
    specs_dir: Path | None = None,
) -> GenerateResult:
    """Validate, check, diff and (when asked and valid) save a plan's spec."""
    if plan.spec is None:
        return GenerateResult(plan)
    spec = dict(plan.spec)
    if name:
        spec["name"] = name
    if spec != plan.spec:
        plan = Plan(spec, None, plan.unmapped, plan.assumptions, plan.confidence, plan.source)
    chosen = str(spec.get("name") or "generated_workflow")
    text = spec_yaml(spec)
    result = GenerateResult(plan, name=chosen, yaml=text)
    result.unsafe = safety_problems(spec, allowed_origins(settings))
    result.validation = validate_text(text, source=f"{chosen}.yaml")
    if not _NAME.fullmatch(chosen):  # the validator says why; never a path from it
        return result
    folder = specs_dir or default_spec_dir(settings)
    result.existing = _existing(chosen, folder)
    if result.existing is not None:
        result.diff = _diff(result.existing, text)
    if save:
        save_result(result, settings, specs_dir=folder)
    return result


def save_result(
    result: GenerateResult, settings: Settings, *, specs_dir: Path | None = None
) -> Path | None:
    """Store a valid, safe generated spec in the spec folder as a new revision.

    Returns:
        Where it was written (also ``result.saved``), or ``None`` when the result is not
        :attr:`GenerateResult.ok` (nothing is written then).

    Raises:
        OSError: The spec folder cannot be written.
    """
    if not result.ok or result.yaml is None or result.name is None:
        return None
    target = (specs_dir or default_spec_dir(settings)) / f"{result.name}.yaml"
    result.revision = _save(result.yaml, target)
    result.saved = target
    return target
