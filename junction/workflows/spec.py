"""The workflow spec: pydantic models of a YAML workflow, and the helpers the runner needs.

A spec (built-in: ``junction/workflows/specs/*.yaml``; JSON Schema in
``junction/workflows/workflow.schema.json``)::

    name: employee_onboarding
    description: Workday hire -> Okta -> Webex
    parameters:
      worker_id: {type: string, required: true, description: Workday ID}
      room: {type: string, default: ops}
      notify: {type: boolean, default: true}
    concurrency: {okta: 4}            # optional bound of concurrent calls per integration
    priority: normal                  # high | normal | low: order in the shared rate budget
    steps:
      - id: hire
        uses: workday.get_worker      # <integration>.<action>
        with: {worker_id: "{{ params.worker_id }}"}
        cache: {ttl: 5m}              # read-only actions only (or just `cache: 5m`)
        retries: 2
        timeout: 30s
      - id: okta_user
        uses: okta.create_user
        with:
          first_name: "{{ steps.hire.output.descriptor }}"
          last_name: "-"
          email: "{{ steps.hire.output.primary_work_email }}"
      - id: welcome
        uses: notify.send             # <capability>.<verb>, see junction.workflows.capabilities
        with:
          text: "Welcome {{ steps.okta_user.output.profile.login }}"
          channel: "{{ params.room }}"
        providers: [webex]            # capability steps: providers in preference order
        fallback: [slack]             # then these, in order
        when: "params.notify"         # a condition (jinja2 expression, sandboxed)
        idempotency_key: "welcome-{{ params.worker_id }}"
    outputs:
      okta_user_id: "{{ steps.okta_user.output.id }}"

Semantics the runner implements (documented here so spec authors and the runner agree):

- Dependencies: ``needs`` plus every step named in a template of the step (``with``,
  ``when``, ``for_each``, ``idempotency_key``, fallback ``with``). Steps with no path
  between them may run concurrently. :meth:`WorkflowSpec.dependencies` computes them.
- Template context: ``params`` (typed, defaults applied: :func:`resolve_params`),
  ``steps.<id>.output`` (the action's output as JSON data, ``model_dump(mode="json")``:
  Python field names, e.g. Workday's ``primary_work_email``; a list for ``for_each``),
  ``steps.<id>.status`` (``"ok"``, ``"skipped"``, ``"failed"``), ``steps.<id>.provider``
  (the integration that answered), ``workflow.name``, ``run.id``; in a ``for_each`` step
  also ``item`` and ``index``. A ``with`` value that is exactly one ``{{ expression }}``
  keeps its native type (an int stays an int); see :mod:`junction.workflows.templating`.
- ``when`` false: the step is skipped (status ``skipped``, output ``None``), and so are
  the steps that depend on it (a dependent cannot read an output that does not exist).
- ``retries``: step-level retries (the runner's task retries) on top of the client's own
  transport retries; ``retry_delay`` between them. ``timeout``: per attempt, seconds.
- ``cache``: the output is reused for ``ttl`` seconds for the same action and rendered
  inputs; only read-only actions may be cached (a validation error otherwise).
- ``fallback``: alternatives tried in order when the primary fails (after its retries)
  or its circuit breaker is open. For ``<integration>.<action>`` steps, each entry is
  another ``uses`` target of the same capability; for capability steps, a provider
  (integration) name. An entry may carry its own ``with`` (else the step's is used).
- ``providers`` (capability steps): the providers allowed, in preference order; by
  default every provider of the capability whose required inputs ``with`` gives. The
  runner may reorder them by recent health (routing), then tries ``fallback`` entries.
- ``idempotency_key``: for side-effecting steps. Optional: when absent it is derived by
  :func:`derive_idempotency_key` from the workflow name, the step id, the run's
  parameters and the ``for_each`` index, so a rerun of the same workflow with the same
  parameters reuses the keys and never duplicates a side effect. The runner passes the
  key in the field the action declares for it (``ActionSpec.key_field``, see
  :func:`idempotency_field`) unless ``with`` sets that field itself; read-only steps
  ignore it (validation rejects an explicit key on them).
- ``for_each``: an expression giving a list; the action runs once per item (at most
  ``concurrency`` at a time) and the step's output is the list of outputs, in order.
- ``continue_on_error``: the step's failure does not fail the run (its dependents are
  skipped).

Public API (stable; changes are additive):

- Models: :class:`WorkflowSpec`, :class:`Parameter`, :class:`ParamType`, :class:`Step`,
  :class:`Fallback`, :class:`CacheSpec`, :class:`Target`.
- :func:`parse_duration` (``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, numbers = seconds).
- :func:`resolve_params` (CLI strings -> typed values, defaults, missing/unknown errors).
- :func:`derive_idempotency_key`, :func:`idempotency_field`.
- :meth:`WorkflowSpec.dependencies`, :meth:`WorkflowSpec.step`,
  :meth:`WorkflowSpec.topological_order`, :meth:`WorkflowSpec.template_fields`,
  :meth:`Step.target`, :attr:`Step.display_name`.
- :func:`workflow_json_schema`, :func:`render_json_schema` (the published schema).
- Loading plus every check (line numbers, registry lookups, templates, cycles):
  :mod:`junction.workflows.validate` (``load_workflow``, ``validate_file``).
- Capability -> provider bindings (``notify.send`` -> webex/slack/...):
  :mod:`junction.workflows.capabilities` (``candidates(step)``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from integrations.adaptive import Priority
from integrations.catalog import load_catalog
from integrations.yamlconfig import ConfigModel
from junction.durations import duration_seconds
from junction.workflows.templating import step_references

if TYPE_CHECKING:
    from integrations.base import ActionSpec

__all__ = [
    "CacheSpec",
    "Duration",
    "Fallback",
    "ParamType",
    "Parameter",
    "ParameterError",
    "Priority",
    "Step",
    "Target",
    "WorkflowSpec",
    "derive_idempotency_key",
    "idempotency_field",
    "parse_duration",
    "resolve_params",
]

STEP_ID = r"^[a-z_][a-z0-9_]*$"
"""Step ids and parameter names are identifiers, so templates can say ``steps.hire``."""

_USES = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
_FALLBACK = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$"


MIN_DURATION = 0.001
"""Shortest duration a spec may give (1 ms): the runner cannot act on less."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``.

    Raises:
        ValueError: Not a finite duration of at least 1 ms.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s'")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (parsed := duration_seconds(value)) is not None:
            seconds = parsed
        else:
            raise ValueError(
                f"{str(value)[:40]!r} is not a duration (use seconds or '500ms', '30s', '5m', '1h')"
            )
    except OverflowError:
        raise ValueError("a duration must be a finite number of seconds") from None
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds (not .inf or .nan)")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds < MIN_DURATION:
        raise ValueError(f"a duration must be at least {MIN_DURATION * 1000:g}ms")
    return seconds


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {
            "type": "string",
            "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$|^\s*\d+(\.\d+)?\s*$",
        },
    ],
    "description": "Seconds, or a string like '500ms', '30s', '5m', '1h', '1m30s'.",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
"""A duration in seconds; YAML may say ``30``, ``"30s"``, ``"5m"``."""

MAX_TIMEOUT = 86_400.0
"""Longest step ``timeout`` (a day)."""

MAX_RETRY_DELAY = 3_600.0
"""Longest ``retry_delay`` (an hour)."""

MAX_CACHE_TTL = 30 * 86_400.0
"""Longest ``cache`` TTL (30 days)."""


def _at_most(limit: float, shown: str) -> Callable[[float], float]:
    def check(seconds: float) -> float:
        if seconds > limit:
            raise ValueError(f"at most {shown} ({limit:g} seconds)")
        return seconds

    return check


class ParamType(StrEnum):
    """Types a workflow parameter may have (JSON Schema names)."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ARRAY = "array"
    OBJECT = "object"


_PY_TYPES: dict[ParamType, tuple[type, ...]] = {
    ParamType.STRING: (str,),
    ParamType.INTEGER: (int,),
    ParamType.NUMBER: (int, float),
    ParamType.BOOLEAN: (bool,),
    ParamType.ARRAY: (list,),
    ParamType.OBJECT: (dict,),
}


def _type_ok(kind: ParamType, value: Any) -> bool:
    if isinstance(value, bool) and kind is not ParamType.BOOLEAN:
        return False
    return isinstance(value, _PY_TYPES[kind])


class ParameterError(ValueError):
    """Parameters given to a run do not fit the spec (missing, unknown, wrong type)."""


class Parameter(ConfigModel):
    """One workflow parameter.

    Attributes:
        type: The value's type.
        description: What it is.
        default: Used when the run does not give it (must have ``type``).
        required: The run must give it. Defaults to true when there is no default.
        enum: Allowed values.
    """

    type: ParamType = ParamType.STRING
    description: str = ""
    default: Any = None
    required: bool | None = None
    enum: list[Any] | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> Parameter:
        if isinstance(self.default, float) and not math.isfinite(self.default):
            raise ValueError("default must be a finite number (not .inf or .nan)")
        if self.default is not None and not _type_ok(self.type, self.default):
            raise ValueError(f"default {self.default!r} is not of type {self.type.value}")
        if self.default is not None and self.required:
            raise ValueError("a parameter with a default cannot be required")
        if self.enum is not None and self.default is not None and self.default not in self.enum:
            raise ValueError(f"default {self.default!r} is not one of {self.enum}")
        return self

    @property
    def is_required(self) -> bool:
        """Whether a run must give the parameter (explicit, or no default)."""
        return self.required if self.required is not None else self.default is None

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (a CLI string or a JSON value) to this parameter's type.

        Raises:
            ParameterError: It cannot be converted.
        """
        out = value
        if isinstance(value, str) and self.type is not ParamType.STRING:
            try:
                out = json.loads(value)
            except (ValueError, RecursionError):  # not JSON, or nested absurdly deep
                out = value
            if self.type is ParamType.BOOLEAN and value.lower() in {"true", "yes", "on", "1"}:
                out = True
            elif self.type is ParamType.BOOLEAN and value.lower() in {"false", "no", "off", "0"}:
                out = False
        if self.type is ParamType.NUMBER and isinstance(out, int) and not isinstance(out, bool):
            try:
                out = float(out)
            except OverflowError:
                raise ParameterError(f"{str(value)[:40]!r} is too large a number") from None
        if isinstance(out, float) and not math.isfinite(out):
            raise ParameterError(f"{value!r} is not a finite number")
        if not _type_ok(self.type, out):
            raise ParameterError(f"{value!r} is not of type {self.type.value}")
        if self.enum is not None and out not in self.enum:
            raise ParameterError(f"{out!r} is not one of {self.enum}")
        return out


class CacheSpec(ConfigModel):
    """Caching of a read-only step's output (``cache: 5m`` is short for ``{ttl: 5m}``)."""

    ttl: Annotated[Duration, AfterValidator(_at_most(MAX_CACHE_TTL, "30d"))] = Field(
        description="How long a cached output is reused."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, int | float | str) and not isinstance(data, bool):
            return {"ttl": data}
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The mapping form, or the shorthand: a bare duration."""
        return {"anyOf": [handler(core_schema), _DURATION_SCHEMA]}


class Fallback(ConfigModel):
    """An alternative provider of a step (``slack`` or ``slack.post_message`` shorthand).

    Attributes:
        uses: For an ``<integration>.<action>`` step, another ``<integration>.<action>``;
            for a capability step, an integration offering the capability.
        with_: Inputs for this alternative (YAML ``with``); the step's when omitted.
    """

    model_config = ConfigDict(populate_by_name=True)

    uses: str = Field(pattern=_FALLBACK)
    with_: dict[str, Any] | None = Field(None, alias="with")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"uses": data} if isinstance(data, str) else data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The mapping form, or the shorthand: the ``uses`` string alone."""
        return {"anyOf": [handler(core_schema), {"type": "string", "pattern": _FALLBACK}]}


class Target(BaseModel):
    """What a ``uses`` string names: an integration's action, or a capability's verb."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["action", "capability"]
    left: str
    right: str

    @property
    def text(self) -> str:
        """The ``uses`` form, ``left.right``."""
        return f"{self.left}.{self.right}"


class Step(ConfigModel):
    """One step of a workflow (see the module docstring for the semantics).

    Attributes:
        id: Identifier, unique in the workflow (``steps.<id>`` in templates).
        uses: ``<integration>.<action>`` or ``<capability>.<verb>``.
        name: Display name (default: the id).
        description: What the step does.
        with_: Inputs (YAML ``with``), templated.
        needs: Steps that must finish first (besides those its templates read).
        retries: Step-level retries after the first attempt fails.
        retry_delay: Seconds between step-level retries.
        timeout: Seconds one attempt may take.
        cache: Output caching (read-only actions only).
        fallback: Alternatives tried in order when this step's provider fails.
        providers: Capability steps: the providers allowed, in preference order
            (default: every provider of the capability that ``with`` can serve).
        when: Condition (a template expression); the step is skipped when false.
        idempotency_key: Template of the side effect's key (derived when absent).
        for_each: Expression giving a list; the step runs once per ``item``.
        concurrency: With ``for_each``: items run at once.
        continue_on_error: A failure marks the step failed but does not fail the run
            (dependents are skipped).
    """

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(pattern=STEP_ID)
    uses: str = Field(pattern=_USES)
    name: str | None = None
    description: str = ""
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: Annotated[
        list[str],
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "string", "pattern": STEP_ID}},
                    {"type": "string", "pattern": STEP_ID},
                ],
                "description": "Steps that must finish first (one id or a list).",
            }
        ),
    ] = Field(default_factory=list)
    retries: int = Field(0, ge=0, le=20)
    retry_delay: Annotated[Duration, AfterValidator(_at_most(MAX_RETRY_DELAY, "1h"))] | None = None
    timeout: Annotated[Duration, AfterValidator(_at_most(MAX_TIMEOUT, "24h"))] | None = None
    cache: CacheSpec | None = None
    fallback: list[Fallback] = Field(default_factory=list)
    providers: list[str] = Field(default_factory=list)
    when: str | None = None
    idempotency_key: str | None = None
    for_each: str | None = None
    concurrency: int | None = Field(None, ge=1, le=1000)
    continue_on_error: bool = False

    @field_validator("needs", mode="before")
    @classmethod
    def _needs_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def display_name(self) -> str:
        """The name shown in Prefect's UI."""
        return self.name or self.id

    def target(self) -> Target:
        """What ``uses`` names: an integration action if the catalog has the left part."""
        left, _, right = self.uses.partition(".")
        kind: Literal["action", "capability"] = "action" if left in load_catalog() else "capability"
        return Target(kind=kind, left=left, right=right)


class WorkflowSpec(ConfigModel):
    """A whole workflow.

    Attributes:
        name: Identifier of the workflow (Prefect flow-run names use it).
        description: What it does.
        version: Free-form version of the spec.
        parameters: Typed parameters, by name.
        concurrency: Concurrent calls at most, per integration, in this workflow.
        priority: ``high``, ``normal`` or ``low``: order in the shared rate budget.
        steps: The steps (order is only the display order; dependencies decide the run).
        outputs: Results of the run, templated from ``params`` and ``steps``.
    """

    model_config = ConfigDict(populate_by_name=True)

    schema_: str | None = Field(None, alias="$schema", description="JSON Schema of the file.")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    version: str | None = None
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    concurrency: dict[str, int] = Field(default_factory=dict)
    priority: Priority = Field(
        "normal",
        description="Priority of the run's calls in the shared rate budget: high "
        "(incidents) first, low (bulk) never takes the reserved share.",
    )
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _param_names(cls, value: dict[str, Parameter]) -> dict[str, Parameter]:
        for name in value:
            if not re.match(STEP_ID, name):
                raise ValueError(f"parameter name {name!r} must be lower_snake_case")
        return value

    @field_validator("concurrency")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if limit < 1:
                raise ValueError(f"concurrency of {name!r} must be at least 1")
        return value

    def step(self, step_id: str) -> Step:
        """The step called ``step_id``.

        Raises:
            KeyError: No such step.
        """
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def template_fields(self, step: Step) -> dict[str, Any]:
        """The templated parts of ``step``, by field (``with``, ``when``, ...)."""
        fields: dict[str, Any] = {"with": step.with_}
        for name in ("when", "for_each", "idempotency_key"):
            value = getattr(step, name)
            if value is not None:
                fields[name] = value
        for i, fb in enumerate(step.fallback):
            if fb.with_ is not None:
                fields[f"fallback[{i}].with"] = fb.with_
        return fields

    def dependencies(self) -> dict[str, set[str]]:
        """Each step's upstream steps: ``needs`` plus the steps its templates read.

        References to unknown steps are left out (validation reports them).
        """
        ids = {s.id for s in self.steps}
        deps: dict[str, set[str]] = {}
        for s in self.steps:
            found = set(s.needs)
            for key, value in self.template_fields(s).items():
                expression = key in {"when", "for_each"}
                found |= step_references(value, expression=expression)
            deps[s.id] = {d for d in found if d in ids and d != s.id}
        return deps

    def topological_order(self) -> list[list[str]]:
        """Steps in waves: each wave depends only on earlier waves.

        Raises:
            ValueError: The dependencies have a cycle.
        """
        deps = self.dependencies()
        done: set[str] = set()
        waves: list[list[str]] = []
        while len(done) < len(deps):
            wave = [s.id for s in self.steps if s.id not in done and deps[s.id] <= done]
            if not wave:
                raise ValueError("the steps' dependencies have a cycle")
            waves.append(wave)
            done.update(wave)
        return waves


def resolve_params(spec: WorkflowSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameters: ``given`` coerced to the declared types, defaults filled in.

    Args:
        spec: The workflow.
        given: Values by name (CLI strings like ``"3"`` or ``"[\\"a\\"]"`` are parsed).

    Returns:
        Every declared parameter (``None`` for an optional one without a default).

    Raises:
        ParameterError: Unknown names, missing required ones or wrong types (all listed).
    """
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in given:
        if name not in spec.parameters:
            known = ", ".join(spec.parameters) or "none"
            problems.append(f"unknown parameter {name!r} (known: {known})")
    for name, param in spec.parameters.items():
        if name in given and given[name] is not None:
            try:
                out[name] = param.coerce(given[name])
            except ParameterError as exc:
                problems.append(f"parameter {name!r}: {exc}")
        elif param.is_required:
            problems.append(f"missing required parameter {name!r} ({param.type.value})")
        else:
            out[name] = param.default
    if problems:
        raise ParameterError("; ".join(problems))
    return out


def derive_idempotency_key(
    spec: WorkflowSpec, step_id: str, params: Mapping[str, Any], index: int | None = None
) -> str:
    """The default idempotency key of a side-effecting step.

    Stable for the same workflow, step, parameters (and ``for_each`` index), so a retry
    or a rerun after a lost response sends the same key.

    Returns:
        ``junction-<workflow>-<step>-<24 hex digits>``.
    """
    canonical = json.dumps(dict(params), sort_keys=True, default=str, separators=(",", ":"))
    basis = f"{spec.name}\n{step_id}\n{canonical}\n{'' if index is None else index}"
    digest = hashlib.sha256(basis.encode()).hexdigest()[:24]
    return f"junction-{spec.name}-{step_id}-{digest}"


def idempotency_field(action: ActionSpec) -> str | None:
    """The input field of ``action`` that takes an idempotency key, if any.

    The action declares it (``@action(key_field=...)``): the runner never guesses from
    field names, so a vendor whose key is called ``correlation_id`` is covered too.
    """
    return None if action.read_only else action.key_field


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file (published as ``workflow.schema.json``).

    Editors pick it up from a spec's first line,
    ``# yaml-language-server: $schema=<path>/workflow.schema.json`` (the built-in specs
    say ``../workflow.schema.json``).
    """
    schema = WorkflowSpec.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://junction.dev/schemas/workflow.schema.json"
    schema["title"] = "Junction workflow spec"
    return schema


def render_json_schema() -> str:
    """:func:`workflow_json_schema` as the exact text of ``workflow.schema.json``."""
    return json.dumps(workflow_json_schema(), indent=2, sort_keys=True) + "\n"
