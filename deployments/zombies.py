"""Zombie flow runs: a run whose process died with its worker is marked Crashed.

When only a flow run's process dies, its worker reports the run Crashed. When the worker
dies with it (kill -9 of the group, a lost host), nothing is left to report it and the
run stays Running for ever. Prefect's answer is an automation on the heartbeats every
flow run sends (``prefect.flow-run.heartbeat``, every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds, 180 by default): after a heartbeat, expect another heartbeat or a final state
within three periods, else set the run Crashed. The run can then be rerun with the same
parameters (docs/runbook.md, "Faults"). :mod:`deployments.automations` applies it with
the others (``make serve``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.automations import Automation

ZOMBIES = "junction: crash flow runs without heartbeats"
MISSED_HEARTBEATS = 3
"""Heartbeat periods without one before a Running flow run is declared Crashed."""

# A final state ends the wait as a heartbeat does.
_ALIVE_OR_DONE = {
    "prefect.flow-run.heartbeat",
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}


def zombie_automation(within_seconds: float | None = None) -> Automation:
    """The automation marking a flow run Crashed when its heartbeats stop.

    Args:
        within_seconds: Silence after a heartbeat that makes a run a zombie (default:
            :data:`MISSED_HEARTBEATS` x ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``; Prefect
            accepts no less than 10 s).
    """
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.settings import get_current_settings

    if within_seconds is None:
        frequency = get_current_settings().flows.heartbeat_frequency or 180
        within_seconds = float(MISSED_HEARTBEATS * frequency)
    return Automation(
        name=ZOMBIES,
        description="Mark a flow run Crashed when its heartbeats stop (its process and "
        "worker are gone); rerun it with the same parameters.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect=_ALIVE_OR_DONE,
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within_seconds:.0f} s: its process is gone",
            )
        ],
    )
