"""Prefect events the flows emit, so a Prefect automation can react to Junction.

* ``junction.workflow.failed``: a workflow run failed. Resource: the integration of the
  failed step when known (else the workflow, ``junction.workflow.<name>``), related: the
  workflow; payload: ``run_id``, ``failed_step``, ``error``.

An automation's trigger matches on the event name and ``prefect.resource.id``
(``junction.integration.okta``), e.g. to pause the bulk deployments of an integration
while it is down. The monitor's ``junction.integration.degraded`` / ``.recovered`` and the
alert engine's events are emitted by :mod:`junction.events` (wherever the monitor runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.events import Event

from integrations.catalog import load_catalog
from junction.events import emit, integration_resource


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
