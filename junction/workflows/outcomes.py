"""What a workflow run produces: :class:`StepOutcome` per step, :class:`RunResult` per run,
and the hook (:data:`StepWrapper`) through which a step's body runs (directly, or inside a
Prefect task: ``tasks/steps.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

from junction.workflows.spec import Step

__all__ = [
    "RunResult",
    "RunStatus",
    "StepBody",
    "StepFailed",
    "StepOutcome",
    "StepStatus",
    "StepWrapper",
    "run_directly",
]

StepStatus = Literal["ok", "failed", "skipped"]
RunStatus = Literal["completed", "failed"]


@dataclass
class StepOutcome:
    """What one step did.

    Attributes:
        step_id: The step.
        status: ``ok``, ``failed`` or ``skipped``.
        uses: The ``<integration>.<action>`` that produced the outcome (the last tried).
        provider: The integration that answered (``None`` when nothing did).
        fallback: The provider used when it was not the first choice (else ``None``).
        attempts: Step-level attempts over every alternative (0 when skipped or cached).
        retries: Step-level retries plus the clients' request retries.
        calls: Integration calls made (one per action request, after its retries).
        cached: The output came from the cache.
        reused: The side effect was done by an earlier run with the same idempotency key
            (the side-effect journal); nothing was sent.
        coalesced: The output came from an identical call in flight.
        duration_ms: From start (dependencies met) to end.
        started_at: When the step started (UTC).
        output: The action's output as JSON data (a list with ``for_each``).
        error: Why it failed or was skipped.
        error_class: The failure's error class.
        tried: ``provider: error`` of each failed alternative, in order.
    """

    step_id: str
    status: StepStatus
    uses: str = ""
    provider: str | None = None
    fallback: str | None = None
    attempts: int = 0
    retries: int = 0
    calls: int = 0
    cached: bool = False
    reused: bool = False
    coalesced: bool = False
    duration_ms: float = 0.0
    started_at: datetime | None = None
    output: Any = None
    error: str | None = None
    error_class: str | None = None
    tried: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``--json``, Prefect task results)."""
        return {
            "step_id": self.step_id,
            "status": self.status,
            "uses": self.uses,
            "provider": self.provider,
            "fallback": self.fallback,
            "attempts": self.attempts,
            "retries": self.retries,
            "calls": self.calls,
            "cached": self.cached,
            "reused": self.reused,
            "coalesced": self.coalesced,
            "duration_ms": round(self.duration_ms, 1),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "output": self.output,
            "error": self.error,
            "error_class": self.error_class,
            "tried": list(self.tried),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepOutcome:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        started = values.get("started_at")
        values["started_at"] = datetime.fromisoformat(started) if started else None
        return cls(**values)


@dataclass
class RunResult:
    """What one workflow run did.

    Attributes:
        run_id: The run's id (``calls.run_id`` of its calls).
        workflow: The spec's name.
        status: ``completed`` or ``failed``.
        started_at: Start (UTC).
        duration_ms: Wall time of the run.
        steps: Outcome per step, in the spec's order.
        outputs: The spec's ``outputs``, rendered (empty when the run failed).
        params: The resolved parameters.
        error: Why the run failed (names the step).
        failed_step: The first step that failed.
    """

    run_id: str
    workflow: str
    status: RunStatus
    started_at: datetime
    duration_ms: float
    steps: dict[str, StepOutcome]
    outputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    @property
    def retries(self) -> int:
        """Retries of every step (step-level and request-level)."""
        return sum(s.retries for s in self.steps.values())

    @property
    def fallbacks(self) -> int:
        """Steps answered by a fallback provider."""
        return sum(1 for s in self.steps.values() if s.fallback)

    @property
    def steps_run(self) -> int:
        """Steps that were not skipped."""
        return sum(1 for s in self.steps.values() if s.status != "skipped")

    def row(self) -> dict[str, Any]:
        """The ``workflow_runs`` row of this run."""
        return {
            "id": uuid4().hex,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "started_at": self.started_at,
            "ended_at": datetime.now(UTC),
            "status": self.status,
            "duration_ms": self.duration_ms,
            "steps": self.steps_run,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "error": self.error,
            "params_json": json.dumps(self.params, default=str, sort_keys=True),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``junction workflow run --json``)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "duration_ms": round(self.duration_ms, 1),
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "error": self.error,
            "failed_step": self.failed_step,
            "params": self.params,
            "outputs": self.outputs,
            "steps": [s.to_dict() for s in self.steps.values()],
        }


class StepFailed(Exception):
    """A step failed; the message names the step and every alternative's error."""

    def __init__(self, message: str, *, error_class: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class


StepBody = Callable[[], Awaitable[StepOutcome]]
StepWrapper = Callable[[Step, dict[str, Any], StepBody], Awaitable[StepOutcome]]
"""``wrapper(step, rendered_inputs, body)``: runs ``body`` (e.g. inside a Prefect task)."""


async def run_directly(step: Step, inputs: dict[str, Any], body: StepBody) -> StepOutcome:
    """The default :data:`StepWrapper`: just run the step."""
    return await body()
