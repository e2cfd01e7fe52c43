"""Prefect automations as code: ``python -m deployments.automations [--list]``.

Creates or updates, by name (idempotent: run it again after deploying), the automations
that act on Junction's events (:mod:`junction.events`) on the
``PREFECT_API_URL`` server:

* ``junction: incident response on critical alert``: a ``junction.alert.fired`` event
  whose resource carries ``junction.severity: critical`` runs the ``incident_response``
  deployment (:mod:`deployments.specs`) with the alert's name, fingerprint, severity and
  message, templated from the event (status ``firing``).
* ``junction: incident response on resolved critical alert``: the same deployment with
  status ``resolved`` when such an alert resolves (the spec joins the same incident).
* ``junction: pause <integration> deployments while down`` / ``... resume ...``: per
  integration that has deployments tagged ``integration:<name>`` (incident response
  excepted: it must run while a service is down), a
  ``junction.integration.degraded`` event with ``junction.status: critical`` pauses them
  (no new scheduled runs against a service that is down), and
  ``junction.integration.recovered`` resumes them.

* ``junction: notify on capacity scale-out``: a ``junction.capacity.scale-out`` event
  (the ``capacity-watch`` flow) sends the notification block named ``junction-capacity``
  (any notification block type; create it in the UI) the reasons and the forecast time.
  Planned only when that block exists.

``make serve`` / ``python -m deployments.local up|deploy`` run this after deploying (the
deployments must exist: the actions name them by id).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from deployments.zombies import zombie_automation

if TYPE_CHECKING:
    from prefect.automations import Automation

ROOT = Path(__file__).resolve().parents[1]
INCIDENT_DEPLOYMENT = "incident_response/incident_response"
INCIDENT_FIRED = "junction: incident response on critical alert"
INCIDENT_RESOLVED = "junction: incident response on resolved critical alert"
PAUSE = "junction: pause {service} deployments while down"
RESUME = "junction: resume {service} deployments on recovery"
INTEGRATION_TAG = "integration:"
SCALE_OUT = "junction: notify on capacity scale-out"
SCALE_OUT_BLOCK = "junction-capacity"

# Event fields the incident-response run takes (Jinja, rendered by the server).
INCIDENT_PARAMETERS: dict[str, str] = {
    "alert_name": "{{ event.payload.fingerprint }}",
    "fingerprint": "{{ event.payload.fingerprint }}",
    "severity": "{{ event.payload.severity }}",
    "summary": "{{ event.payload.message }}",
}


def _critical_alert_trigger(event: str) -> Any:
    from prefect.events import EventTrigger

    return EventTrigger(
        expect={event},
        match={"prefect.resource.id": "junction.integration.*", "junction.severity": "critical"},
        posture="Reactive",
        threshold=1,
    )


def incident_automations(deployment_id: UUID) -> list[Automation]:
    """The two incident-response automations (fired, resolved) for ``deployment_id``."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment

    out = []
    for name, event, status in (
        (INCIDENT_FIRED, "junction.alert.fired", "firing"),
        (INCIDENT_RESOLVED, "junction.alert.resolved", "resolved"),
    ):
        out.append(
            Automation(
                name=name,
                description=f"Run {INCIDENT_DEPLOYMENT} when a critical alert is {status}.",
                trigger=_critical_alert_trigger(event),
                actions=[
                    RunDeployment(
                        source="selected",
                        deployment_id=deployment_id,
                        parameters={**INCIDENT_PARAMETERS, "status": status},
                    )
                ],
            )
        )
    return out


def pause_automations(service: str, deployment_ids: Sequence[UUID]) -> list[Automation]:
    """Pause ``service``'s deployments while it is down, resume them when it recovers."""
    from prefect.automations import Automation
    from prefect.events import EventTrigger
    from prefect.events.actions import PauseDeployment, ResumeDeployment

    resource = f"junction.integration.{service}"
    ids = sorted(deployment_ids, key=str)
    return [
        Automation(
            name=PAUSE.format(service=service),
            description=f"Pause the deployments tagged {INTEGRATION_TAG}{service} while down.",
            trigger=EventTrigger(
                expect={"junction.integration.degraded"},
                match={"prefect.resource.id": resource, "junction.status": "critical"},
                posture="Reactive",
                threshold=1,
            ),
            actions=[PauseDeployment(source="selected", deployment_id=i) for i in ids],
        ),
        Automation(
            name=RESUME.format(service=service),
            description=f"Resume the deployments tagged {INTEGRATION_TAG}{service}.",
            trigger=EventTrigger(
                expect={"junction.integration.recovered"},
                match={"prefect.resource.id": resource},
                posture="Reactive",
                threshold=1,
            ),
            actions=[ResumeDeployment(source="selected", deployment_id=i) for i in ids],
        ),
    ]


def scale_out_automation(block_document_id: UUID) -> Automation:
    """Notify through the block ``block_document_id`` when capacity signals scale-out."""
    from prefect.automations import Automation
    from prefect.events import EventTrigger
    from prefect.events.actions import SendNotification

    return Automation(
        name=SCALE_OUT,
        description="Tell the operators that Junction's workers stop keeping up, and when.",
        trigger=EventTrigger(
            expect={"junction.capacity.scale-out"},
            match={"prefect.resource.id": "junction.capacity"},
            posture="Reactive",
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="Junction: scale out",
                body="Forecast crossing: {{ event.payload.forecast_at }}. "
                "{{ event.payload.reasons | join('; ') }}",
            )
        ],
    )


def deployments_by_integration() -> dict[str, list[UUID]]:
    """Ids of the server's deployments per ``integration:<name>`` tag."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
    out: dict[str, list[UUID]] = {}
    for d in deployments:
        for tag in d.tags:
            if tag.startswith(INTEGRATION_TAG):
                out.setdefault(tag.removeprefix(INTEGRATION_TAG), []).append(d.id)
    return out


def planned() -> list[Automation]:
    """Every automation for the deployments on the server now."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    out: list[Automation] = [zombie_automation()]  # runs whose worker died: Crashed
    with get_client(sync_client=True) as client:
        try:
            incident = client.read_deployment_by_name(INCIDENT_DEPLOYMENT)
        except ObjectNotFound:
            incident = None
    if incident is not None:
        out.extend(incident_automations(incident.id))
    with get_client(sync_client=True) as client:
        documents = client.read_block_documents(include_secrets=False)
        blocks = [b for b in documents if b.name == SCALE_OUT_BLOCK]
    if blocks:
        out.append(scale_out_automation(blocks[0].id))
    for service, ids in sorted(deployments_by_integration().items()):
        # Incident response must run precisely while a service is down: never paused.
        bulk = [i for i in ids if incident is None or i != incident.id]
        if bulk:
            out.extend(pause_automations(service, bulk))
    return out


def apply(automation: Automation) -> tuple[UUID, bool]:
    """Create ``automation``, or update the one of the same name in place.

    Returns:
        Its id, and whether it was created.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    core = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=automation.name)
        if not existing:
            return client.create_automation(core), True
        client.update_automation(existing[0].id, core)
        for extra in existing[1:]:  # duplicates a racing run created: keep one
            client.delete_automation(extra.id)
    return existing[0].id, False


def apply_all() -> dict[str, tuple[UUID, bool]]:
    """Apply :func:`planned` on the configured server; ``{name: (id, created)}``."""
    return {a.name: apply(a) for a in planned()}


def deploy_automations(
    *, env: Mapping[str, str] | None = None, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """``python -m deployments.automations`` against ``env``'s ``PREFECT_API_URL``.

    Raises:
        RuntimeError: It failed (message holds its output).
    """
    result = subprocess.run(
        [sys.executable, "-m", "deployments.automations"],
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`python -m deployments.automations` exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deployments.automations [--list]``."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.automations",
        description="Create or update Junction's Prefect automations (by name) on "
        "PREFECT_API_URL's server.",
    )
    parser.add_argument("--list", action="store_true", help="show the plan, change nothing")
    args = parser.parse_args(argv)
    if args.list:
        for automation in planned():
            actions = ", ".join(a.type for a in automation.actions)
            print(f"{automation.name}\t{actions}")
        return 0
    for name, (automation_id, created) in apply_all().items():
        print(f"{'created' if created else 'updated'} automation {name!r} ({automation_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
