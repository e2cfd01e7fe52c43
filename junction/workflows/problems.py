"""What spec validation reports: :class:`SpecError`, :class:`ValidationResult`, and the
:class:`Reporter` the checks write to (it knows the YAML line of every part of the spec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from integrations.yamlconfig import DataPath, YamlDocument
from junction.workflows.spec import Step, WorkflowSpec

__all__ = ["Reporter", "SpecError", "SpecInvalid", "ValidationError", "ValidationResult"]


@dataclass(frozen=True)
class SpecError:
    """One problem found in a spec.

    Attributes:
        message: What is wrong.
        line: 1-based line in the file (``None`` when unknown).
        step: Id of the step concerned, if any.
        file: The spec's file name (or ``<spec>``).
        severity: ``error`` fails validation; ``warning`` does not.
    """

    message: str
    line: int | None = None
    step: str | None = None
    file: str = "<spec>"
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        kind = "" if self.severity == "error" else "warning: "
        who = f"step '{self.step}': " if self.step else ""
        return f"{where}: {kind}{who}{self.message}"


ValidationError = SpecError
"""Another name of :class:`SpecError`."""


@dataclass
class ValidationResult:
    """What validation found.

    Attributes:
        spec: The parsed spec (``None`` when the schema did not validate).
        errors: Errors (the spec must not run when there are any).
        warnings: Warnings.
        source: The file name.
    """

    spec: WorkflowSpec | None
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)
    source: str = "<spec>"

    @property
    def ok(self) -> bool:
        """No errors."""
        return not self.errors and self.spec is not None


class SpecInvalid(ValueError):
    """A spec failed validation; ``errors`` lists every problem."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class Reporter:
    """Collects the problems of one spec, each located by its data path.

    Args:
        doc: The parsed YAML (data and line map).
    """

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.source = doc.source
        self.raw: dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
        self.errors: list[SpecError] = []
        self.warnings: list[SpecError] = []
        raw_steps = self.raw.get("steps")
        self.raw_steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
        self.raw_ids: set[str] = {
            s["id"] for s in self.raw_steps if isinstance(s, dict) and isinstance(s.get("id"), str)
        }
        self.index: dict[str, int] = {}
        for i, s in enumerate(self.raw_steps):
            if isinstance(s, dict) and isinstance(s.get("id"), str):
                self.index.setdefault(s["id"], i)
        self.positions: dict[int, int] = {}
        self.used: set[str] = set()
        """Integrations the steps use (for the ``concurrency`` check)."""

    def error(self, message: str, path: DataPath = (), step: str | None = None) -> None:
        """Record an error at ``path``."""
        self.errors.append(SpecError(message, self.doc.line(path), step, self.source))

    def warn(self, message: str, path: DataPath = (), step: str | None = None) -> None:
        """Record a warning at ``path``."""
        self.warnings.append(
            SpecError(message, self.doc.line(path), step, self.source, severity="warning")
        )

    def step_path(self, step: Step | str, *rest: str | int) -> DataPath:
        """The data path of (a field of) a step: by object when given one (ids may repeat)."""
        if isinstance(step, str):
            return ("steps", self.index.get(step, 0), *rest)
        return ("steps", self.positions.get(id(step), self.index.get(step.id, 0)), *rest)

    def step_label(self, position: int) -> str:
        """The id of the raw step at ``position``, or ``#n`` when it has none."""
        raw = self.raw_steps[position] if 0 <= position < len(self.raw_steps) else None
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            return str(raw["id"])
        return f"#{position + 1}"

    def locate(self, spec: WorkflowSpec) -> None:
        """Map each parsed step to its position in the YAML (skipping malformed steps)."""
        seen: dict[str, int] = {}
        for step in spec.steps:
            matches = [
                i
                for i, raw in enumerate(self.raw_steps)
                if isinstance(raw, dict) and raw.get("id") == step.id
            ]
            n = seen.get(step.id, 0)
            if n < len(matches):
                self.positions[id(step)] = matches[n]
            seen[step.id] = n + 1

    def result(self, spec: WorkflowSpec | None) -> ValidationResult:
        """The result: problems sorted by line."""
        errors = sorted(self.errors, key=lambda e: e.line or 0)
        warnings = sorted(self.warnings, key=lambda e: e.line or 0)
        return ValidationResult(spec, errors, warnings, self.source)
