"""Prefect events the flows emit, so a Prefect automation can react to Junction.

* ``junction.integration.degraded`` / ``junction.integration.recovered``: a monitored
  service's status went from healthy to warning or critical, or back (the
  ``monitor-continuous`` flow, as the monitor sees it). Resource: the integration,
  ``junction.integration.<name>``; payload: ``from``, ``to``, ``reason``.
* ``junction.workflow.failed``: a workflow run failed. Resource: the integration of the
  failed step when known (else the workflow, ``junction.workflow.<name>``), related: the
  workflow; payload: ``run_id``, ``failed_step``, ``error``.

An automation's trigger matches on the event name and ``prefect.resource.id``
(``junction.integration.okta``), e.g. to pause the bulk deployments of an integration
while it is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.events import Event

from integrations.catalog import load_catalog
from junction.events import emit, integration_resource

BAD = frozenset({"warning", "critical"})


def status_changed(
    service: str, old: str | None, new: str | None, reason: str = ""
) -> Event | None:
    """Emit ``junction.integration.degraded`` (into warning or critical, resource label
    ``junction.status``) or ``.recovered`` for a status change that is one (others, e.g.
    unknown -> healthy, emit nothing)."""
    if new in BAD and new != old:  # warning -> critical too: "down" pauses its deployments
        name = "junction.integration.degraded"
    elif new == "healthy" and old in BAD:
        name = "junction.integration.recovered"
    else:
        return None
    return emit(
        event=name,
        # The status as a label: automations match resource labels (deployments/automations.py).
        resource=integration_resource(service, junction_status=str(new)),
        payload={"from": old, "to": new, "reason": reason},
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
        event="junction.workflow.failed",
        resource=resource,
        related=[workflow_resource] if provider else [],
        payload={
            "run_id": summary.get("run_id"),
            "failed_step": failed,
            "error": summary.get("error"),
        },
    )
