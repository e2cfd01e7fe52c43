"""Junction's alert transitions as Prefect events, for Prefect automations.

Prefect is imported here because a Prefect feature is the point: the events are what
Prefect automations (``deployments/automations.py``) trigger on. The events:

* ``junction.integration.degraded`` / ``.recovered``: the monitor's status of a service
  went into warning or critical (or between them) / back to healthy
  (:func:`status_changed`, called by :class:`junction.monitor.Monitor` on each change).

* ``junction.workflow.failed``: a workflow run failed (:func:`workflow_failed`, called by
  :meth:`junction.workflows.runner.WorkflowRunner.run` as it records the run). Resource:
  the integration of the failed step when known (else the workflow,
  ``junction.workflow.<name>``), related: the workflow; payload ``run_id``,
  ``failed_step``, ``error``.
* ``junction.alert.fired``: an alert fired, or changed severity (payload ``transition``:
  ``fired`` or ``severity``), so a warning that turns critical reaches a trigger on
  critical alerts.
* ``junction.alert.resolved``: an alert resolved.

Each is emitted once per transition: :meth:`AlertEngine.evaluate` returns each
transition once (it is committed in the alert database in the same call), and a sweep
that changes nothing emits nothing.

Resource: the service, ``junction.integration.<service>``, with the labels
``junction.severity`` and ``junction.rule`` (an automation's trigger matches on resource
labels, not on the payload). Related: the alert (``junction.alert.<fingerprint>``, role
``alert``). Payload: ``severity``, ``rule``, ``fingerprint``, ``alert_id``, ``group`` (the
alert engine's notification group, the incident's root), ``state``, ``message``,
``value``, ``suppressed_by``.

Best effort, never in the caller's way: :func:`emit` only queues the event on Prefect's
background events worker (measured ~0.8 ms a call, 17 ms for the first, which starts the
worker; 0.03 ms when there is no server) and swallows every error. Without a
Prefect API (no ``PREFECT_API_URL``) and outside a flow run nothing is emitted: Prefect
would start a temporary server synchronously (15-20 s) just to receive events that no
automation watches. Payload strings go through the credential redactor
(:func:`integrations.redaction.redact`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from integrations.catalog import load_catalog
from integrations.redaction import redact

if TYPE_CHECKING:
    from prefect.events import Event

    from junction.alerting.alerts import Alert
    from junction.alerting.evaluation import EvaluationResult

log = logging.getLogger(__name__)

ALERT_FIRED = "junction.alert.fired"
ALERT_RESOLVED = "junction.alert.resolved"
WORKFLOW_FAILED = "junction.workflow.failed"
INTEGRATION_DEGRADED = "junction.integration.degraded"
INTEGRATION_RECOVERED = "junction.integration.recovered"
CAPACITY_SCALE_OUT = "junction.capacity.scale-out"  # flows/capacity.py: scale out


def integration_resource(service: str, **labels: str) -> dict[str, str]:
    """The event resource of an integration (``junction.integration.<service>``).

    Args:
        service: The integration's name.
        **labels: Extra resource labels, ``junction_severity="critical"`` becoming
            ``junction.severity`` (triggers match on resource labels).
    """
    out = {
        "prefect.resource.id": f"junction.integration.{service}",
        "prefect.resource.name": service,
    }
    for key, value in labels.items():
        out[key.replace("_", ".", 1)] = value
    return out


def can_emit() -> bool:
    """Whether events have somewhere to go: a Prefect API, or a running flow or task run.

    A process that has not loaded Prefect and has no ``PREFECT_API_URL`` in its
    environment runs no flow and has no server configured: it is not made to import
    Prefect (seconds) on its first alert.
    """
    if "prefect" not in sys.modules and not os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return True
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def emit(
    event: str,
    resource: Mapping[str, str],
    *,
    related: Iterable[Mapping[str, str]] = (),
    payload: Mapping[str, Any] | None = None,
) -> Event | None:
    """Queue one Prefect event; never raises, never waits for the server.

    String payload values go through the credential redactor.

    Returns:
        The event queued, or None (nowhere to send it, or it could not be built).
    """
    try:
        if not can_emit():
            return None
        from prefect.events import emit_event

        return emit_event(
            event=event,
            resource=dict(resource),
            related=[dict(r) for r in related],
            # Vendor text (errors, messages) may quote a credential: never in an event.
            payload={k: redact(v) if isinstance(v, str) else v for k, v in (payload or {}).items()},
        )
    except Exception:  # best effort: an event never fails the monitor or a run
        log.warning("could not emit Prefect event %s", event, exc_info=True)
        return None


BAD_STATUSES = frozenset({"warning", "critical"})


def status_changed(
    service: str, old: str | None, new: str | None, reason: str = "", *, down: bool = False
) -> Event | None:
    """Emit ``junction.integration.degraded`` (into warning or critical, or between them)
    or ``.recovered`` (back to healthy) for a monitor status change that is one; others
    (e.g. unknown -> healthy) emit nothing.

    The resource carries the new status as the label ``junction.status`` (automations
    match resource labels); payload ``from``, ``to``, ``reason``, ``down``.
    """
    if new in BAD_STATUSES and new != old:
        name = INTEGRATION_DEGRADED
    elif new == "healthy" and old in BAD_STATUSES:
        name = INTEGRATION_RECOVERED
    else:
        return None
    return emit(
        name,
        integration_resource(service, junction_status=str(new)),
        payload={"from": old, "to": new, "reason": reason, "down": down},
    )


def workflow_failed(summary: Mapping[str, Any]) -> Event | None:
    """Emit ``junction.workflow.failed`` for a failed run's summary (``RunResult.to_dict()``)."""
    if summary.get("status") == "completed":
        return None
    workflow = str(summary.get("workflow"))
    failed = str(summary.get("failed_step") or "")
    steps: list[Mapping[str, Any]] = summary.get("steps") or []
    step: Mapping[str, Any] = next((s for s in steps if s.get("step_id") == failed), {})
    # The provider that failed; an action step that failed has none: its integration.
    left = str(step.get("uses") or "").partition(".")[0]
    provider = str(step.get("provider") or "").partition(".")[0] or (
        left if left in load_catalog() else ""
    )
    workflow_resource = {
        "prefect.resource.id": f"junction.workflow.{workflow}",
        "prefect.resource.name": workflow,
        "prefect.resource.role": "workflow",
    }
    resource = integration_resource(provider) if provider else dict(workflow_resource)
    resource.pop("prefect.resource.role", None)
    return emit(
        event=WORKFLOW_FAILED,
        resource=resource,
        related=[workflow_resource] if provider else [],
        payload={
            "run_id": summary.get("run_id"),
            "failed_step": failed,
            "error": summary.get("error"),
        },
    )


def _alert_event(name: str, alert: Alert, transition: str) -> Event | None:
    severity = alert.severity.value
    return emit(
        name,
        integration_resource(alert.service, junction_severity=severity, junction_rule=alert.rule),
        related=[
            {
                "prefect.resource.id": f"junction.alert.{alert.fingerprint}",
                "prefect.resource.role": "alert",
                "prefect.resource.name": alert.fingerprint,
            }
        ],
        payload={
            "transition": transition,
            "service": alert.service,
            "severity": severity,
            "rule": alert.rule,
            "fingerprint": alert.fingerprint,
            "alert_id": alert.id,
            "group": alert.group_key,
            "state": alert.state.value,
            "message": alert.message,
            "value": alert.value,
            "suppressed_by": alert.suppressed_by,
        },
    )


def alert_transitions(result: EvaluationResult) -> list[Event]:
    """Emit the events of one evaluation's transitions (fired, severity changes, resolved).

    Returns:
        The events queued.
    """
    queued = [
        *(_alert_event(ALERT_FIRED, a, "fired") for a in result.fired),
        *(_alert_event(ALERT_FIRED, a, "severity") for a in result.changed),
        *(_alert_event(ALERT_RESOLVED, a, "resolved") for a in result.resolved),
    ]
    return [e for e in queued if e is not None]


__all__ = [
    "ALERT_FIRED",
    "ALERT_RESOLVED",
    "INTEGRATION_DEGRADED",
    "INTEGRATION_RECOVERED",
    "WORKFLOW_FAILED",
    "alert_transitions",
    "can_emit",
    "emit",
    "integration_resource",
    "status_changed",
    "workflow_failed",
]
