"""PagerDuty: REST API v2 incidents and the Events API v2.

Follows https://developer.pagerduty.com/api-reference/ (REST: ``POST /incidents``, ``GET
/incidents``, ``PUT /incidents/{id}``; spec: PagerDuty/api-schema
``reference/REST/openapiv3.json``) and
https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ (Events API v2:
``POST https://events.pagerduty.com/v2/enqueue``).

REST calls authenticate with ``Authorization: Token token=<api key>``, send
``Content-Type: application/json`` on every request (PagerDuty's spec declares it on GETs
too) and a ``From: <requester email>`` header on writes. The ``From`` address comes from
the action's ``from_email`` or, by default, ``JUNCTION_PAGERDUTY_USERNAME``.

The Events API is a different host and authenticates with the integration's routing key
in the body (no ``Authorization`` header, so the REST key never leaves for it). Its URL,
in order: the client's ``events_url`` argument, the integration configuration's ``events_url``
(``JUNCTION_PAGERDUTY_EVENTS_URL``), ``<base URL>/v2/enqueue`` when the client points at
the Junction sandbox (i.e. ``<sandbox_url>/pagerduty/v2/enqueue``),
``https://events.eu.pagerduty.com/v2/enqueue`` for the EU REST host, else
``https://events.pagerduty.com/v2/enqueue``. The routing key (the action's
``routing_key``, else the client's, else the configuration's ``routing_key``,
``JUNCTION_PAGERDUTY_ROUTING_KEY``) is registered with the redactor before use and never
logged.

``list_oncalls`` (``GET /oncalls?include[]=users``, read-only) gives who is on call,
with each user's email, for an escalation policy or schedule.

Retry- and rerun-safety: ``create_incident`` always sends an ``incident_key`` (the
caller's, else derived from service and title: never random); PagerDuty rejects a second
open incident with the same key on the service (HTTP 400), which the client answers by
looking the incident up by key and returning it; ``update_incident`` is a PUT of a
status (idempotent); ``send_event`` always sends a ``dedup_key`` (the caller's, else
derived from the event's summary, source, severity, component, group and class), which
PagerDuty uses to fold repeats into the same alert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from integrations.actions import action
from integrations.auth import Credentials
from integrations.base import IntegrationClient
from integrations.catalog import AuthSpec
from integrations.errors import BadRequestError, ConfigurationError
from integrations.idempotency import derived_key
from integrations.redaction import register_secret

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
EVENTS_URL_EU = "https://events.eu.pagerduty.com/v2/enqueue"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

IncidentStatus = Literal["triggered", "acknowledged", "resolved"]


# --- inputs -------------------------------------------------------------------------------


class CreateIncidentParams(BaseModel):
    """Input of :meth:`PagerDutyClient.create_incident`.

    Attributes:
        title: Incident title.
        service_id: Id of the PagerDuty service (``PIJ90N7``).
        urgency: ``high`` or ``low`` (default: the service's rule).
        details: Body text of the incident.
        incident_key: De-duplication key (e.g. ``<run id>:<step>``); default derived
            from service and title, so the same request made again finds the incident
            while it is open.
        escalation_policy_id: Escalation policy to use instead of the service's.
        priority_id: Priority id.
        from_email: Requester email (``From`` header); default
            ``JUNCTION_PAGERDUTY_USERNAME``.
    """

    title: str = Field(min_length=1)
    service_id: str = Field(min_length=1)
    urgency: Literal["high", "low"] | None = None
    details: str | None = None
    incident_key: str | None = Field(None, min_length=1, max_length=255)
    escalation_policy_id: str | None = None
    priority_id: str | None = None
    from_email: str | None = Field(None, pattern=_EMAIL)

    @property
    def key(self) -> str:
        """The ``incident_key``: the caller's, else derived from service and title."""
        return derived_key(self.incident_key, self.service_id, self.title)

    def body(self) -> dict[str, Any]:
        """The ``POST /incidents`` body."""
        incident: dict[str, Any] = {
            "type": "incident",
            "title": self.title,
            "service": {"id": self.service_id, "type": "service_reference"},
            "incident_key": self.key,
        }
        if self.urgency:
            incident["urgency"] = self.urgency
        if self.details:
            incident["body"] = {"type": "incident_body", "details": self.details}
        if self.escalation_policy_id:
            incident["escalation_policy"] = {
                "id": self.escalation_policy_id,
                "type": "escalation_policy_reference",
            }
        if self.priority_id:
            incident["priority"] = {"id": self.priority_id, "type": "priority_reference"}
        return {"incident": incident}


class ListIncidentsParams(BaseModel):
    """Input of :meth:`PagerDutyClient.list_incidents`.

    Attributes:
        statuses: Only incidents in these statuses.
        incident_key: Only the incident with this de-duplication key.
        service_ids: Only incidents of these services.
        urgencies: Only these urgencies.
        limit: Page size (1-100).
        offset: Offset of the page.
    """

    statuses: list[IncidentStatus] = Field(default_factory=list)
    incident_key: str | None = None
    service_ids: list[str] = Field(default_factory=list)
    urgencies: list[Literal["high", "low"]] = Field(default_factory=list)
    limit: int = Field(25, ge=1, le=100)
    offset: int = Field(0, ge=0)

    def query(self) -> dict[str, Any]:
        """Query parameters (PagerDuty's ``name[]`` array style)."""
        query: dict[str, Any] = {"limit": self.limit, "offset": self.offset}
        if self.statuses:
            query["statuses[]"] = list(self.statuses)
        if self.service_ids:
            query["service_ids[]"] = list(self.service_ids)
        if self.urgencies:
            query["urgencies[]"] = list(self.urgencies)
        if self.incident_key:
            query["incident_key"] = self.incident_key
        return query


class ListOncallsParams(BaseModel):
    """Input of :meth:`PagerDutyClient.list_oncalls`.

    Attributes:
        escalation_policy_ids: Only on-calls of these escalation policies.
        schedule_ids: Only on-calls of these schedules.
        earliest: Only the earliest on-call per user, policy and level (PagerDuty's
            ``earliest=true``: who is on call now, without the later shifts).
        max_escalation_level: Keep levels up to this one (1 = first responders).
        limit: Page size (1-100).
    """

    escalation_policy_ids: list[str] = Field(default_factory=list)
    schedule_ids: list[str] = Field(default_factory=list)
    earliest: bool = True
    max_escalation_level: int | None = Field(None, ge=1)
    limit: int = Field(100, ge=1, le=100)

    def query(self) -> dict[str, Any]:
        """Query parameters (PagerDuty's ``name[]`` array style)."""
        query: dict[str, Any] = {"include[]": ["users"], "limit": self.limit}
        if self.escalation_policy_ids:
            query["escalation_policy_ids[]"] = list(self.escalation_policy_ids)
        if self.schedule_ids:
            query["schedule_ids[]"] = list(self.schedule_ids)
        if self.earliest:
            query["earliest"] = "true"
        return query


class UpdateIncidentParams(BaseModel):
    """Input of :meth:`PagerDutyClient.update_incident`.

    Attributes:
        incident_id: The incident's id.
        status: ``acknowledged`` or ``resolved``.
        resolution: Note recorded with a resolve.
        from_email: Requester email (``From``); default ``JUNCTION_PAGERDUTY_USERNAME``.
    """

    incident_id: str = Field(min_length=1)
    status: Literal["acknowledged", "resolved"]
    resolution: str | None = None
    from_email: str | None = Field(None, pattern=_EMAIL)


class SendEventParams(BaseModel):
    """Input of :meth:`PagerDutyClient.send_event` (Events API v2).

    Attributes:
        event_action: ``trigger``, ``acknowledge`` or ``resolve``.
        dedup_key: Groups events into one alert; required to acknowledge or resolve.
            Default for a trigger: derived from summary, source, severity, component,
            group and class (returned, so it can be resolved).
        summary: Alert summary (required to trigger; at most 1024 characters).
        source: Affected system (required to trigger).
        severity: ``critical``, ``error``, ``warning`` or ``info`` (required to trigger).
        component: Affected component.
        group: Logical grouping of components.
        event_class: Class/type of the event (sent as ``class``).
        custom_details: Free-form details.
        timestamp: When the problem was detected.
        routing_key: The integration's routing key; default
            ``JUNCTION_PAGERDUTY_ROUTING_KEY``. A secret: never logged.
    """

    event_action: Literal["trigger", "acknowledge", "resolve"] = "trigger"
    dedup_key: str | None = Field(None, min_length=1, max_length=255)
    summary: str | None = Field(None, min_length=1, max_length=1024)
    source: str | None = Field(None, min_length=1)
    severity: Literal["critical", "error", "warning", "info"] | None = None
    component: str | None = None
    group: str | None = None
    event_class: str | None = None
    custom_details: dict[str, Any] | None = None
    timestamp: datetime | None = None
    routing_key: SecretStr | None = None

    @model_validator(mode="after")
    def _check_action(self) -> SendEventParams:
        if self.event_action == "trigger":
            missing = [k for k in ("summary", "source", "severity") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a trigger event needs {', '.join(missing)}")
        elif self.dedup_key is None:
            raise ValueError(f"an {self.event_action} event needs the dedup_key of its alert")
        return self

    @property
    def key(self) -> str:
        """The ``dedup_key``: the caller's, else derived from the alert's identity."""
        return derived_key(
            self.dedup_key,
            self.summary,
            self.source,
            self.severity,
            self.component,
            self.group,
            self.event_class,
        )

    def body(self, routing_key: str, dedup_key: str) -> dict[str, Any]:
        """The ``/v2/enqueue`` body."""
        body: dict[str, Any] = {
            "routing_key": routing_key,
            "event_action": self.event_action,
            "dedup_key": dedup_key,
        }
        if self.event_action == "trigger":
            payload: dict[str, Any] = {
                "summary": self.summary,
                "source": self.source,
                "severity": self.severity,
            }
            for key in ("component", "group", "custom_details"):
                value = getattr(self, key)
                if value is not None:
                    payload[key] = value
            if self.event_class is not None:
                payload["class"] = self.event_class
            if self.timestamp is not None:
                payload["timestamp"] = self.timestamp.isoformat()
            body["payload"] = payload
        return body


# --- outputs ------------------------------------------------------------------------------


class PagerDutyReference(BaseModel):
    """A reference to another PagerDuty object."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str | None = None
    summary: str | None = None


class PagerDutyIncident(BaseModel):
    """An incident.

    Attributes:
        existing: Set by Junction (not a PagerDuty field): the incident already existed
            with this ``incident_key`` (a retry, or the same key sent again).
    """

    model_config = ConfigDict(extra="allow")

    id: str
    type: str = "incident"
    incident_number: int | None = None
    title: str | None = None
    status: IncidentStatus | str
    urgency: str | None = None
    incident_key: str | None = None
    html_url: str | None = None
    service: PagerDutyReference | None = None
    created_at: datetime | None = None
    existing: bool = False


class IncidentEnvelope(BaseModel):
    """``{"incident": {...}}``."""

    model_config = ConfigDict(extra="allow")

    incident: PagerDutyIncident


class IncidentList(BaseModel):
    """A page of incidents."""

    model_config = ConfigDict(extra="allow")

    incidents: list[PagerDutyIncident]
    limit: int | None = None
    offset: int | None = None
    more: bool | None = None
    total: int | None = None


class OncallUser(BaseModel):
    """The user of an on-call entry (a full user with ``include[]=users``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str | None = None
    summary: str | None = None
    name: str | None = None
    email: str | None = None


class Oncall(BaseModel):
    """One on-call entry: a user on a level of an escalation policy."""

    model_config = ConfigDict(extra="allow")

    user: OncallUser
    escalation_level: int | None = None
    escalation_policy: PagerDutyReference | None = None
    schedule: PagerDutyReference | None = None
    start: datetime | None = None
    end: datetime | None = None


class OncallList(BaseModel):
    """A page of on-calls, and the distinct on-call emails (for chat invitations).

    Attributes:
        oncalls: The entries, as PagerDuty lists them.
        emails: Distinct emails of the users, in order of first appearance (set by
            Junction).
        more: PagerDuty has more entries than this page.
    """

    model_config = ConfigDict(extra="allow")

    oncalls: list[Oncall]
    emails: list[str] = Field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    more: bool | None = None


class EventResult(BaseModel):
    """Answer of the Events API (HTTP 202).

    Attributes:
        status: ``success``.
        message: ``Event processed``.
        dedup_key: The alert's de-duplication key (use it to acknowledge/resolve).
    """

    model_config = ConfigDict(extra="allow")

    status: str
    message: str | None = None
    dedup_key: str


# --- client -------------------------------------------------------------------------------


class PagerDutyClient(IntegrationClient):
    """Typed PagerDuty client (``get_client("pagerduty")``).

    Args:
        *args: As :class:`IntegrationClient`.
        events_url: Full URL of the Events API v2 ``enqueue`` endpoint (see the module
            docstring for the default).
        routing_key: Default Events API routing key (a secret).
        **kwargs: As :class:`IntegrationClient`.
    """

    service = "pagerduty"

    def __init__(
        self,
        *args: Any,
        events_url: str | None = None,
        routing_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.events_url = events_url or self.config.events_url or self._default_events_url()
        configured = self.config.routing_key
        key = routing_key or (configured.get_secret_value() if configured else None)
        self._routing_key = SecretStr(key) if key else None
        if key:
            register_secret(key)
        self._events: IntegrationClient | None = None

    def _default_events_url(self) -> str:
        if self.sandbox:
            return f"{self.base_url}/v2/enqueue"
        host = urlsplit(self.base_url).hostname or ""
        return EVENTS_URL_EU if host == "api.eu.pagerduty.com" else EVENTS_URL

    def _requester(self, from_email: str | None, action: str) -> str:
        email = from_email or self.config.username
        if not email:
            raise ConfigurationError(
                "PagerDuty needs a requester email for writes: pass from_email or set "
                "JUNCTION_PAGERDUTY_USERNAME",
                service=self.name,
                action=action,
            )
        return email

    @property
    def _rest_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    async def _health_request(self, max_attempts: int) -> None:
        """``GET /abilities`` with the REST headers (the spec wants Content-Type on GETs)."""
        await self.request(
            "GET",
            self.spec.health.path,
            action="health_check",
            headers=self._rest_headers,
            max_attempts=max_attempts,
        )

    @action(read_only=False, idempotent=True, key_field="incident_key")
    async def create_incident(self, params: CreateIncidentParams) -> PagerDutyIncident:
        """Open an incident on a service, safely retried (``incident_key``).

        The request is retried like an idempotent one: if an earlier attempt committed,
        PagerDuty rejects the repeat (an open incident has the key) and the client
        returns that incident, found with ``GET /incidents?incident_key=``, with
        ``existing=True``.

        Args:
            params: Title, service, urgency, details, incident key, requester.

        Returns:
            The created (or already open) incident.

        Raises:
            BadRequestError: PagerDuty rejected the incident for another reason.
        """
        headers = {
            **self._rest_headers,
            "From": self._requester(params.from_email, "create_incident"),
        }
        try:
            created = await self.request(
                "POST",
                "/incidents",
                action="create_incident",
                model=IncidentEnvelope,
                json=params.body(),
                headers=headers,
                idempotent=True,  # a repeat is rejected by incident_key, handled below
            )
        except BadRequestError:
            existing = await self._open_incident(params.key)
            if existing is None:
                raise
            return existing
        return created.incident

    async def _open_incident(self, incident_key: str) -> PagerDutyIncident | None:
        found = await self.request(
            "GET",
            "/incidents",
            action="create_incident.lookup",
            model=IncidentList,
            params={"incident_key": incident_key, "date_range": "all"},
            headers=self._rest_headers,
        )
        for incident in found.incidents:
            if incident.incident_key == incident_key and incident.status != "resolved":
                return incident.model_copy(update={"existing": True})
        return None

    @action(read_only=True)
    async def list_incidents(self, params: ListIncidentsParams) -> IncidentList:
        """List incidents, newest first by default.

        Args:
            params: Filters and page.

        Returns:
            One page of incidents.
        """
        return await self.request(
            "GET",
            "/incidents",
            action="list_incidents",
            model=IncidentList,
            params=params.query(),
            headers=self._rest_headers,
        )

    @action(read_only=True)
    async def list_oncalls(self, params: ListOncallsParams) -> OncallList:
        """Who is on call now (``GET /oncalls``, with the users' emails).

        Args:
            params: Escalation policies or schedules, and the level cap.

        Returns:
            The on-call entries (one page) and their users' distinct emails.
        """
        page = await self.request(
            "GET",
            "/oncalls",
            action="list_oncalls",
            model=OncallList,
            params=params.query(),
            headers=self._rest_headers,
        )
        if params.max_escalation_level is not None:
            cap = params.max_escalation_level
            page.oncalls = [o for o in page.oncalls if (o.escalation_level or 1) <= cap]
        page.emails = list(dict.fromkeys(o.user.email for o in page.oncalls if o.user.email))
        return page

    @action(read_only=False, idempotent=True)
    async def update_incident(self, params: UpdateIncidentParams) -> PagerDutyIncident:
        """Acknowledge or resolve an incident (``PUT /incidents/{id}``, idempotent).

        Args:
            params: Incident id, new status, optional resolution note, requester.

        Returns:
            The updated incident.
        """
        incident: dict[str, Any] = {"type": "incident_reference", "status": params.status}
        if params.resolution and params.status == "resolved":
            incident["resolution"] = params.resolution
        updated = await self.request(
            "PUT",
            self.path("/incidents/{incident}", incident=params.incident_id),
            action="update_incident",
            model=IncidentEnvelope,
            json={"incident": incident},
            headers={
                **self._rest_headers,
                "From": self._requester(params.from_email, "update_incident"),
            },
        )
        return updated.incident

    @action(read_only=False, idempotent=True, key_field="dedup_key")
    async def send_event(self, params: SendEventParams) -> EventResult:
        """Send an Events API v2 event (trigger, acknowledge or resolve an alert).

        Idempotent by ``dedup_key`` (derived for a trigger without one), so it is
        retried after a lost response.

        Args:
            params: Event action, payload, dedup key, routing key.

        Returns:
            PagerDuty's acknowledgement with the alert's ``dedup_key``.
        """
        secret = params.routing_key or self._routing_key
        if secret is None:
            raise ConfigurationError(
                "no routing key; pass routing_key or set JUNCTION_PAGERDUTY_ROUTING_KEY",
                service=self.name,
                action="send_event",
            )
        routing_key = secret.get_secret_value()
        register_secret(routing_key)
        dedup_key = params.key
        return await self._events_client().request(
            "POST",
            self.events_url,
            action="send_event",
            model=EventResult,
            json=params.body(routing_key, dedup_key),
            idempotent=True,
        )

    def _events_client(self) -> IntegrationClient:
        """An engine for the Events API host: no REST key, same breaker/metrics/http."""
        if self._events is None:
            spec = self.spec.model_copy(
                update={"auth": AuthSpec(scheme="none"), "headers": {"Accept": "application/json"}}
            )
            parts = urlsplit(self.events_url)
            self._events = IntegrationClient(
                spec,
                engine=self.engine,
                base_url=f"{parts.scheme}://{parts.netloc}",
                credentials=Credentials(source="none"),
                http=self.http,
                retry=self.retry,
                breaker=self.breaker,
                metric_hook=self.metric_hook,
                source=self.source,
                run_id=self.run_id,
                config=self.config,
            )
        return self._events
