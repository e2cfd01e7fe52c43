"""Prometheus Alertmanager API v2: post and list alerts, silences, status.

Follows Alertmanager's OpenAPI description ``api/v2/openapi.yaml`` (prometheus/alertmanager,
v0.25) and https://prometheus.io/docs/alerting/latest/clients/ (how a client sends
alerts). The base URL includes the API path (``http://localhost:9093/api/v2``), so the
client calls ``/alerts``, ``/silences`` and ``/status``. No auth (Alertmanager has none;
a proxy in front may add it).

Retry-safety: posting alerts is idempotent by label set (Alertmanager merges an alert
into the one with identical labels, only refreshing its times and annotations), so it is
retried freely. Silences have no natural key: :meth:`AlertmanagerClient.create_silence`
puts a marker ``[junction:<key>]`` in the comment (the caller's key, else one derived
from matchers, author, comment and times) and, before the first attempt and every
re-attempt, lists silences with the same matchers and returns a live one carrying the
marker instead of creating another.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.idempotency import derived_key


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- inputs -------------------------------------------------------------------------------


class PostableAlert(BaseModel):
    """One alert to send (``postableAlert``).

    Attributes:
        labels: Identifying labels (``alertname`` at least, by convention); the label
            set is the alert's identity.
        annotations: Descriptive labels (``summary``, ``description``...).
        starts_at: When the alert started firing (default: when Alertmanager receives it).
        ends_at: When it stops (a past time resolves it; default: the resolve timeout).
        generator_url: Link back to the alert's source.
    """

    model_config = ConfigDict(populate_by_name=True)

    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(None, alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str | None = Field(None, alias="generatorURL")

    def body(self) -> dict[str, Any]:
        """The alert as JSON (RFC 3339 times)."""
        body: dict[str, Any] = {"labels": self.labels}
        if self.annotations:
            body["annotations"] = self.annotations
        if self.starts_at is not None:
            body["startsAt"] = _rfc3339(self.starts_at)
        if self.ends_at is not None:
            body["endsAt"] = _rfc3339(self.ends_at)
        if self.generator_url is not None:
            body["generatorURL"] = self.generator_url
        return body


class PostAlertsParams(BaseModel):
    """Input of :meth:`AlertmanagerClient.post_alerts`."""

    alerts: list[PostableAlert] = Field(min_length=1)


class ListAlertsParams(BaseModel):
    """Input of :meth:`AlertmanagerClient.list_alerts`.

    Attributes:
        filter: Matchers, e.g. ``['alertname="DiskFull"', 'severity=~"crit.*"']``.
        active: Include active alerts.
        silenced: Include silenced alerts.
        inhibited: Include inhibited alerts.
        unprocessed: Include alerts not processed yet.
        receiver: Regex of receivers the alerts must go to.
    """

    filter: list[str] = Field(default_factory=list)
    active: bool = True
    silenced: bool = True
    inhibited: bool = True
    unprocessed: bool = True
    receiver: str | None = None

    def query(self) -> dict[str, Any]:
        """Query parameters (``filter`` repeated)."""
        query: dict[str, Any] = {
            key: str(getattr(self, key)).lower()
            for key in ("active", "silenced", "inhibited", "unprocessed")
        }
        if self.filter:
            query["filter"] = list(self.filter)
        if self.receiver:
            query["receiver"] = self.receiver
        return query


class Matcher(BaseModel):
    """A silence matcher.

    Attributes:
        name: Label name.
        value: Value (or regex when ``is_regex``).
        is_regex: Match ``value`` as a regex.
        is_equal: ``False`` negates the match.
    """

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=1)
    value: str
    is_regex: bool = Field(False, alias="isRegex")
    is_equal: bool = Field(True, alias="isEqual")

    def filter_string(self) -> str:
        """The matcher in the ``filter`` query syntax (``name="value"``)."""
        op = {(True, False): "=", (True, True): "=~", (False, False): "!=", (False, True): "!~"}[
            (self.is_equal, self.is_regex)
        ]
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{op}"{escaped}"'


class CreateSilenceParams(BaseModel):
    """Input of :meth:`AlertmanagerClient.create_silence`.

    Attributes:
        matchers: Which alerts to silence (all must match).
        created_by: Author.
        comment: Why (the idempotency marker is appended).
        starts_at: Start (default now).
        ends_at: End; default ``starts_at + duration_minutes``.
        duration_minutes: Length when ``ends_at`` is not given.
        idempotency_key: Identifies this request across retries and reruns; default
            derived from matchers, author, comment and times.
    """

    matchers: list[Matcher] = Field(min_length=1)
    created_by: str = "junction"
    comment: str = Field(min_length=1)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration_minutes: float = Field(60, gt=0)
    idempotency_key: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _order(self) -> CreateSilenceParams:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    @property
    def marker(self) -> str:
        """The marker appended to the comment."""
        key = derived_key(
            self.idempotency_key,
            self.matchers,
            self.created_by,
            self.comment,
            self.starts_at,
            self.ends_at,
            self.duration_minutes,
        )
        return f"[junction:{key}]"

    def body(self, now: datetime) -> dict[str, Any]:
        """The ``postableSilence`` body."""
        start = self.starts_at or now
        end = self.ends_at or start + timedelta(minutes=self.duration_minutes)
        return {
            "matchers": [m.model_dump(by_alias=True) for m in self.matchers],
            "startsAt": _rfc3339(start),
            "endsAt": _rfc3339(end),
            "createdBy": self.created_by,
            "comment": f"{self.comment} {self.marker}",
        }


class GetStatusParams(BaseModel):
    """Input of :meth:`AlertmanagerClient.get_status` (no parameters)."""


# --- outputs ------------------------------------------------------------------------------


class AlertStatus(BaseModel):
    """Where an alert stands (``alertStatus``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    state: str
    silenced_by: list[str] = Field(default_factory=list, alias="silencedBy")
    inhibited_by: list[str] = Field(default_factory=list, alias="inhibitedBy")


class GettableAlert(BaseModel):
    """An alert as Alertmanager holds it (``gettableAlert``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    fingerprint: str
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime = Field(alias="endsAt")
    updated_at: datetime | None = Field(None, alias="updatedAt")
    generator_url: str | None = Field(None, alias="generatorURL")
    status: AlertStatus
    receivers: list[dict[str, Any]] = Field(default_factory=list)


class PostAlertsResult(BaseModel):
    """Outcome of :meth:`AlertmanagerClient.post_alerts` (Alertmanager answers 200, no body).

    Attributes:
        accepted: Number of alerts sent and accepted.
    """

    accepted: int


class SilenceStatus(BaseModel):
    """``silenceStatus``."""

    model_config = ConfigDict(extra="allow")

    state: str


class GettableSilence(BaseModel):
    """A silence as listed."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    comment: str = ""
    created_by: str = Field("", alias="createdBy")
    status: SilenceStatus
    ends_at: datetime | None = Field(None, alias="endsAt")


class SilenceCreated(BaseModel):
    """Answer of ``POST /silences``.

    Attributes:
        silence_id: The silence's id.
        existing: Set by Junction: found on a retry rather than created by this call.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    silence_id: str = Field(alias="silenceID")
    existing: bool = False


class VersionInfo(BaseModel):
    """Build information."""

    model_config = ConfigDict(extra="allow")

    version: str
    revision: str | None = None


class ClusterStatus(BaseModel):
    """Cluster (gossip) state."""

    model_config = ConfigDict(extra="allow")

    status: str


class AlertmanagerStatus(BaseModel):
    """Answer of ``GET /status``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    cluster: ClusterStatus
    version_info: VersionInfo = Field(alias="versionInfo")
    config: dict[str, Any]
    uptime: datetime


# --- client -------------------------------------------------------------------------------


class AlertmanagerClient(IntegrationClient):
    """Typed Alertmanager API v2 client (``get_client("alertmanager")``)."""

    service = "alertmanager"

    @action(read_only=False, idempotent=True)
    async def post_alerts(self, params: PostAlertsParams) -> PostAlertsResult:
        """Send (or refresh, or resolve) alerts; idempotent by label set.

        Args:
            params: The alerts.

        Returns:
            How many were accepted.
        """
        await self.request(
            "POST",
            "/alerts",
            action="post_alerts",
            json=[a.body() for a in params.alerts],
            expect="none",
            idempotent=True,
        )
        return PostAlertsResult(accepted=len(params.alerts))

    @action(read_only=True)
    async def list_alerts(self, params: ListAlertsParams) -> list[GettableAlert]:
        """List the alerts Alertmanager holds, optionally filtered by matchers.

        Args:
            params: Filters.

        Returns:
            The matching alerts.
        """
        return await self.request(
            "GET", "/alerts", action="list_alerts", model=list[GettableAlert], params=params.query()
        )

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def create_silence(self, params: CreateSilenceParams) -> SilenceCreated:
        """Create a silence, safely retried (check-before-create by comment marker).

        Args:
            params: Matchers, times, author, comment, idempotency key.

        Returns:
            The silence id (``existing=True`` when a lost attempt had created it).
        """
        body = params.body(datetime.now(UTC))

        async def lookup() -> SilenceCreated | None:
            silences = await self.request(
                "GET",
                "/silences",
                action="create_silence.lookup",
                model=list[GettableSilence],
                params={"filter": [m.filter_string() for m in params.matchers]},
            )
            for silence in silences:
                if params.marker in silence.comment and silence.status.state != "expired":
                    return SilenceCreated(silence_id=silence.id, existing=True)
            return None

        return await self.post_once(
            "/silences",
            action="create_silence",
            model=SilenceCreated,
            json=body,
            lookup=lookup,
            lookup_first=True,
        )

    @action(read_only=True)
    async def get_status(self, params: GetStatusParams) -> AlertmanagerStatus:
        """Read Alertmanager's status (version, cluster, config, uptime).

        Args:
            params: None.

        Returns:
            The status.
        """
        return await self.request("GET", "/status", action="get_status", model=AlertmanagerStatus)
