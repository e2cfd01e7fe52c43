"""Load and validate a workflow spec before anything runs; every error names step and line.

Checks, all collected (never only the first):

- YAML (:mod:`integrations.yamlconfig`: safe loading, size / node / depth limits,
  duplicate keys, unconstructable scalars) and the schema
  (:mod:`junction.workflows.check_schema`);
- each step against the registries (:mod:`junction.workflows.check_steps`): unknown
  integrations / actions / capabilities / providers, ``with`` input names, required
  inputs and types against the action's input model (constants by the model;
  ``{{ params.x }}`` and ``{{ steps.y.output.z }}`` by the parameter's declared type and
  the output's schema), ``cache`` on a side-effecting action, step retries of a
  non-idempotent action, fallbacks that share no capability, ``for_each`` that cannot
  give a list, ``concurrency`` of unknown integrations;
- templates (:mod:`junction.workflows.check_templates`): syntax, sandbox rules, unknown
  names, parameters and steps, self references, ``needs``, guarded ``outputs``;
- the graph (:mod:`junction.workflows.check_graph`): cycles (named), unreachable steps
  (below a cycle, or ``when: false``).

Warnings (do not fail validation): output fields the model does not declare, actions that
cannot be made idempotent, read-only steps whose output nothing reads.

Public API: :func:`validate_text`, :func:`validate_file`, :func:`load_workflow` (raises
:class:`SpecInvalid`), :class:`SpecError` (also exported as ``ValidationError``),
:class:`ValidationResult`, :data:`SCHEMA_PATH`. Built-in specs:
:mod:`junction.workflows.builtins`.
"""

from __future__ import annotations

from pathlib import Path

from integrations.yamlconfig import ConfigError, YamlDocument, parse_yaml, read_yaml
from junction.workflows.builtins import resolve_spec_path
from junction.workflows.check_graph import check_graph
from junction.workflows.check_schema import check_schema
from junction.workflows.check_steps import check_steps
from junction.workflows.check_templates import check_outputs, check_templates
from junction.workflows.problems import (
    Reporter,
    SpecError,
    SpecInvalid,
    ValidationError,
    ValidationResult,
)
from junction.workflows.spec import WorkflowSpec

__all__ = [
    "SCHEMA_PATH",
    "SpecError",
    "SpecInvalid",
    "ValidationError",
    "ValidationResult",
    "load_workflow",
    "validate_document",
    "validate_file",
    "validate_text",
]

SCHEMA_PATH = Path(__file__).resolve().parent / "workflow.schema.json"
"""The published JSON Schema of a spec."""


def _unreadable(exc: ConfigError, source: str) -> ValidationResult:
    errors = [SpecError(p.message, p.line, None, source) for p in exc.problems]
    return ValidationResult(None, errors, source=source)


def validate_document(doc: YamlDocument) -> ValidationResult:
    """Validate a parsed spec (no side effect: nothing is sent anywhere).

    Returns:
        The spec (when the schema validated) and every error and warning.
    """
    if not isinstance(doc.data, dict):
        message = "a workflow spec is a YAML mapping (name, parameters, steps)"
        return ValidationResult(None, [SpecError(message, 1, None, doc.source)], source=doc.source)
    report = Reporter(doc)
    spec, complete = check_schema(report)
    if spec is not None:
        report.locate(spec)
        check_steps(report, spec)
        check_templates(report, spec)
        check_graph(report, spec)
        check_outputs(report, spec)
    return report.result(spec if complete else None)


def validate_text(text: str | bytes, *, source: str = "<spec>") -> ValidationResult:
    """Validate a spec's YAML text (no side effect: nothing is sent anywhere).

    Args:
        text: The YAML.
        source: File name shown in errors.

    Returns:
        The parsed spec (when the schema validated) and every error and warning.
    """
    try:
        doc = parse_yaml(text, source=source)
    except ConfigError as exc:
        return _unreadable(exc, source)
    return validate_document(doc)


def validate_file(path: str | Path) -> ValidationResult:
    """Validate the spec at ``path`` (or a built-in spec's name).

    Raises:
        FileNotFoundError: No such file or built-in spec.
    """
    resolved = resolve_spec_path(path)
    try:
        doc = read_yaml(resolved)
    except ConfigError as exc:
        return _unreadable(exc, str(resolved))
    return validate_document(doc)


def load_workflow(path: str | Path) -> WorkflowSpec:
    """Load and fully validate a spec; what the runner calls before any side effect.

    Args:
        path: A file, or the name of a built-in spec (``employee_onboarding``).

    Raises:
        FileNotFoundError: No such file or built-in spec.
        SpecInvalid: With every error.
    """
    result = validate_file(path)
    if not result.ok or result.spec is None:
        raise SpecInvalid(result.errors)
    return result.spec
