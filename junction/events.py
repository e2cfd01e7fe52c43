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

Durable, never in the caller's way: :func:`emit` builds the event, appends it to the
event spool under the Junction home (:mod:`junction.event_spool`, ``state/events.sqlite``)
and wakes a background thread that POSTs it to the Prefect API's ``/events`` and marks it
sent once the server took it; swallows every error. A server away mid-run loses nothing:
what it missed is replayed in order on the next emit, at the start of each flow run
(:func:`replay`) and by the sender's own retries. Inside a flow run the event names the
run, its flow, deployment and tags as related resources (as Prefect's client would).
Without a Prefect API (no ``PREFECT_API_URL``) and outside a flow run nothing is emitted:
Prefect would start a temporary server synchronously (15-20 s) just to receive events that
no automation watches; a flow run on Prefect's ephemeral API (no URL to POST to) sends
through Prefect's own events client. Payload strings go through the credential redactor
(:func:`integrations.redaction.redact`).
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrations.catalog import load_catalog
from integrations.redaction import redact
from junction.event_spool import ApiAccess, EventSender, EventSpool

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


SPOOL_FILE = Path("state") / "events.sqlite"  # under the Junction home

_senders: dict[Path, EventSender] = {}
_senders_lock = threading.Lock()
_access: dict[str, ApiAccess] = {}  # API URL -> how to reach it, in memory only


def _current_access() -> ApiAccess:
    """The current Prefect profile's auth header and TLS settings, as Prefect's client
    uses them."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_KEY,
        PREFECT_API_SSL_CERT_FILE,
        PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
    )

    headers = {}
    if auth := PREFECT_API_AUTH_STRING.value():
        headers["Authorization"] = f"Basic {base64.b64encode(auth.encode()).decode()}"
    elif key := PREFECT_API_KEY.value():
        headers["Authorization"] = f"Bearer {key}"
    verify: bool | ssl.SSLContext = True
    if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        verify = False
    elif cert_file := PREFECT_API_SSL_CERT_FILE.value():
        verify = ssl.create_default_context(cafile=cert_file)
    return ApiAccess(headers, verify)


def _access_for(api_url: str) -> ApiAccess:
    if api_url not in _access:  # spooled by an earlier process: this process's profile
        _access[api_url] = _current_access()
    return _access[api_url]


def spool_path() -> Path:
    """The event spool of the current Junction home."""
    from junction.settings import get_settings

    return get_settings().home / SPOOL_FILE


def _sender(path: Path | None = None) -> EventSender:
    path = path or spool_path()
    with _senders_lock:
        if path not in _senders:
            _senders[path] = EventSender(EventSpool(path), _access_for)
        return _senders[path]


def _run_related() -> list[dict[str, str]]:
    """The current flow run, its flow, deployment and tags as related resources."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if ctx is None or run is None:
        return []
    out = [
        {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": run.name,
        },
        {
            "prefect.resource.id": f"prefect.flow.{run.flow_id}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": ctx.flow.name if ctx.flow else "",
        },
    ]
    if run.deployment_id:
        out.append(
            {
                "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                "prefect.resource.role": "deployment",
            }
        )
    out += [
        {"prefect.resource.id": f"prefect.tag.{t}", "prefect.resource.role": "tag"}
        for t in sorted(run.tags)
    ]
    return out


def emit(
    event: str,
    resource: Mapping[str, str],
    *,
    related: Iterable[Mapping[str, str]] = (),
    payload: Mapping[str, Any] | None = None,
) -> Event | None:
    """Spool one Prefect event and wake its sender; never raises, never waits for the
    server (a SQLite insert, ~1 ms).

    String payload values go through the credential redactor.

    Returns:
        The event spooled, or None (nowhere to send it, or it could not be built).
    """
    try:
        if not can_emit():
            return None
        from prefect.events import Event
        from prefect.settings import PREFECT_API_URL

        built = Event(
            event=event,
            resource=dict(resource),
            related=[*(dict(r) for r in related), *_run_related()],
            # Vendor text (errors, messages) may quote a credential: never in an event.
            payload={k: redact(v) if isinstance(v, str) else v for k, v in (payload or {}).items()},
        )
        api_url = str(PREFECT_API_URL.value() or "")
        if api_url and _spool(built, api_url):
            return built
        # The ephemeral API of a flow run (no URL to POST to), or a spool that cannot be
        # written (a full or read-only disk): Prefect's own events client, as before.
        from prefect.events import emit_event

        return emit_event(
            **built.model_dump(include={"event", "resource", "related", "payload", "id"})
        )
    except Exception:  # best effort: an event never fails the monitor or a run
        log.warning("could not emit Prefect event %s", event, exc_info=True)
        return None


def _spool(built: Event, api_url: str) -> bool:
    """Append ``built`` to the spool and wake its sender; False if it could not be."""
    try:
        if api_url not in _access:
            _access[api_url] = _current_access()
        sender = _sender()
        sender.spool.append(str(built.id), built.event, api_url, built.model_dump_json())
    except Exception:
        log.warning("could not spool Prefect event %s", built.event, exc_info=True)
        return False
    sender.wake()
    return True


def replay(*, wait: bool = False) -> int:
    """Send the spool's unsent events (a flow run calls this as it starts); never raises.

    Args:
        wait: Send now in this thread and return the count (tests, the CLI); by default
            only wake the sender thread (returns 0 at once).

    Returns:
        The number of events the server took (0 unless ``wait``).
    """
    try:
        path = spool_path()
        if not path.exists():
            return 0
        sender = _sender(path)
        if wait:
            return sender.flush()
        sender.wake()
    except Exception:
        log.warning("could not replay Prefect events", exc_info=True)
    return 0


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
    "replay",
    "spool_path",
    "status_changed",
    "workflow_failed",
]
