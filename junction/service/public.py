"""The public status page's model: what is public, and the page built from it.

Only what the status-page file (``JUNCTION_STATUS_PAGE_FILE``, default
``<JUNCTION_HOME>/status-page.yaml``; see ``status-page.example.yaml``) lists is public:
its title and, per service, a public display name (and an optional group and
description). Everything on the page is built from those names and from text an operator
wrote for the public (incident notes marked public, the comments of silences marked
public); nothing else of Junction's state reaches it: no internal service names, alert or
vendor error text, hostnames or settings. A service the file does not list never appears,
and an incident or maintenance names only the public services it affects.

:func:`build_page` is a plain function (file, statuses, uptime days, silences, incidents
in; the :class:`StatusPage` out), shared by ``/status`` and ``GET /api/v2/status/page``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from integrations.yamlconfig import ConfigModel, did_you_mean, load_model
from junction.alerting.silences import Silence
from junction.service.uptime import DayUptime
from junction.settings import Settings

STATUS_PAGE_FILE = "status-page.yaml"
"""The file's name in ``JUNCTION_HOME`` when ``JUNCTION_STATUS_PAGE_FILE`` is not set."""

PAST_INCIDENTS_SHOWN = 20
"""Resolved incidents listed (newest first, within the uptime window)."""

ServiceStatus = Literal["operational", "degraded", "down", "maintenance", "unknown"]
OverallState = Literal[
    "operational",
    "degraded",
    "partial_outage",
    "major_outage",
    "maintenance",
    "unknown",
    "unconfigured",
]

SUMMARIES: dict[str, str] = {
    "operational": "All systems operational",
    "degraded": "Some systems are degraded",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "maintenance": "Maintenance in progress",
    "unknown": "Status unknown: no recent checks",
    "unconfigured": "No services are shown on this status page yet",
}
"""The headline of each overall state."""

STATUS_LABELS: dict[str, str] = {
    "operational": "Operational",
    "degraded": "Degraded",
    "down": "Down",
    "maintenance": "Maintenance",
    "unknown": "No data",
}
"""How a service's status reads on the page."""

UNCONFIGURED_NOTICE = (
    "This status page is not configured: list the services to show, under public names, in "
    "status-page.yaml in JUNCTION_HOME (or the file JUNCTION_STATUS_PAGE_FILE names); "
    "status-page.example.yaml in the Junction repository shows the format."
)
INVALID_NOTICE = (
    "The status page's configuration cannot be read; the server's log (and `junction "
    "status-page check`) says why. No service is shown until it is fixed."
)


# ---------------------------------------------------------------------------- the file


class PublicServiceSpec(ConfigModel):
    """One service shown on the page."""

    service: str = Field(description="The catalog name (never shown).")
    name: str = Field(min_length=1, max_length=100, description="The public display name.")
    group: str | None = Field(None, min_length=1, max_length=100, description="Heading.")
    description: str | None = Field(None, max_length=500, description="One line under it.")

    @field_validator("service")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("services")
        if known is not None and value not in known:
            raise ValueError(f"unknown service {value!r}{did_you_mean(value, known)}")
        return value


class StatusPageFile(ConfigModel):
    """``status-page.yaml``: the page's title and the services it shows."""

    title: str = Field("Service status", min_length=1, max_length=200)
    description: str | None = Field(None, max_length=1000)
    services: list[PublicServiceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> StatusPageFile:
        seen: set[str] = set()
        for spec in self.services:
            if spec.service in seen:
                raise ValueError(f"services: {spec.service!r} is listed twice")
            seen.add(spec.service)
        return self

    def public_names(self) -> dict[str, str]:
        """Catalog name -> public name."""
        return {s.service: s.name for s in self.services}


def status_page_path(settings: Settings) -> Path:
    """The status-page file the settings name."""
    if settings.status_page_file is not None:
        return Path(settings.status_page_file)
    return Path(settings.home) / STATUS_PAGE_FILE


def load_status_page(path: Path, services: Iterable[str]) -> StatusPageFile | None:
    """The status-page file, or ``None`` when it does not exist (an empty file: no services).

    Args:
        path: The file.
        services: The catalog's names (a listed service must be one of them).

    Raises:
        integrations.yamlconfig.ConfigError: ``file:line: field: problem``.
    """
    if not path.exists():
        return None
    return load_model(StatusPageFile, path, context={"services": list(services)}, empty={})


# ---------------------------------------------------------------------------- the model


class UptimeDay(BaseModel):
    """One day's bar."""

    date: dt.date = Field(description="The UTC day.")  # dt.: the field shadows the type
    uptime_percent: float | None = Field(description="Percent of the day up; null: no data.")
    minutes_down: int | None = Field(description="Minutes down; null: no data.")
    level: Literal["up", "partial", "down", "none"] = Field(
        description="The bar's colour: up (no downtime), partial (>= 95 %), down, none (no data)."
    )
    label: str = Field(description="Hover text: the date, uptime and minutes down.")


class PublicService(BaseModel):
    """A service as the public sees it."""

    name: str = Field(description="Its public name.")
    group: str | None
    description: str | None
    status: ServiceStatus
    status_label: str
    uptime_percent: float | None = Field(description="Over the days with data; null: none.")
    uptime_label: str = Field(description="``99.95% uptime`` (never rounded up), or ``no data``.")
    days: list[UptimeDay] = Field(description="One per UTC day, oldest first.")


class IncidentUpdate(BaseModel):
    """An update an operator published."""

    ts: datetime = Field(description="When it was published.")
    message: str


class PublicIncident(BaseModel):
    """An incident affecting public services (or with public updates)."""

    title: str
    status: Literal["investigating", "identified", "resolved"]
    impact: Literal["minor", "major"]
    started_at: datetime
    resolved_at: datetime | None
    services: list[str] = Field(description="Public names of the affected public services.")
    updates: list[IncidentUpdate] = Field(description="Published updates, newest first.")


class Maintenance(BaseModel):
    """A scheduled or running maintenance (a silence marked public)."""

    state: Literal["scheduled", "in_progress"]
    starts_at: datetime
    ends_at: datetime
    services: list[str] = Field(description="Public names of the affected public services.")
    message: str


class StatusPage(BaseModel):
    """The public status page (the same model as HTML and JSON)."""

    title: str
    description: str | None
    configured: bool = Field(description="A status-page file exists and is valid.")
    notice: str | None = Field(description="Why the page is empty or incomplete, if it is.")
    state: OverallState
    summary: str
    generated_at: datetime
    days: int = Field(description="Days of uptime history per service.")
    services: list[PublicService]
    active_incidents: list[PublicIncident]
    past_incidents: list[PublicIncident]
    maintenance: list[Maintenance]


# ---------------------------------------------------------------------------- building


class HealthLike(Protocol):
    """What the page reads of a health row (:class:`junction.monitor.ServiceHealth`)."""

    @property
    def status(self) -> str: ...
    @property
    def down(self) -> bool: ...


class EntryLike(Protocol):
    """What the page reads of an incident's timeline entry."""

    @property
    def ts(self) -> datetime: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def public(self) -> bool: ...


class IncidentLike(Protocol):
    """What the page reads of an incident (:class:`junction.incidents.Incident`)."""

    @property
    def services(self) -> Sequence[str]: ...
    @property
    def severity(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def timeline(self) -> Sequence[EntryLike]: ...


def service_status(row: HealthLike | None) -> ServiceStatus:
    """A health row's public status: down, degraded (warning or critical), operational."""
    if row is None or row.status == "unknown":
        return "unknown"
    if row.down:
        return "down"
    if row.status in ("warning", "critical"):
        return "degraded"
    return "operational"


def uptime_day(day: date, data: DayUptime | None) -> UptimeDay:
    """The bar of one day (``data`` ``None``: no data)."""
    percent = None if data is None else data.uptime_percent
    if data is None or percent is None:
        return UptimeDay(
            date=day, uptime_percent=None, minutes_down=None, level="none", label=f"{day}: no data"
        )
    down = data.minutes_down
    level: Literal["up", "partial", "down"] = (
        "up" if down == 0 else "partial" if percent >= 95.0 else "down"
    )
    return UptimeDay(
        date=day,
        uptime_percent=round(percent, 3),
        minutes_down=down,
        level=level,
        label=f"{day}: {_pct(percent)} uptime, {down} minute{'s' if down != 1 else ''} down",
    )


def _pct(value: float) -> str:
    # 99.999 must not read as 100 %: truncate, never round up to a perfect day.
    text = f"{int(value * 100) / 100:.2f}"
    return f"{text.rstrip('0').rstrip('.')}%"


def overall_uptime(days: Sequence[DayUptime | None]) -> float | None:
    """Up time over observed time across ``days``, in percent (``None``: no data)."""
    up = sum(d.up_seconds for d in days if d is not None)
    total = sum(d.observed_seconds for d in days if d is not None)
    return None if total <= 0 else round(100.0 * up / total, 3)


def maintenance_of(
    silences: Iterable[Silence], names: Mapping[str, str], now: datetime
) -> list[Maintenance]:
    """The public silences not yet over, soonest first, naming only public services."""
    out = []
    for s in silences:
        if not s.public or s.deleted_at is not None or now >= s.ends_at:
            continue
        out.append(
            Maintenance(
                state="in_progress" if s.active(now) else "scheduled",
                starts_at=s.starts_at,
                ends_at=s.ends_at,
                services=[names[s.service]] if s.service is not None and s.service in names else [],
                message=s.comment,
            )
        )
    return sorted(out, key=lambda m: (m.starts_at, m.ends_at))


def public_incident(incident: IncidentLike, names: Mapping[str, str]) -> PublicIncident | None:
    """The public view of ``incident``, or ``None`` when it has nothing public (no public
    service affected and no published update)."""
    services = [names[s] for s in names if s in set(incident.services)]
    updates = [
        IncidentUpdate(ts=e.ts, message=e.text)
        for e in incident.timeline
        if e.public and e.kind == "note"  # alert and vendor text is never public
    ]
    if not services and not updates:
        return None
    major = incident.severity == "critical"
    what = "Outage" if major else "Degraded service"
    title = f"{what}: {', '.join(services)}" if services else "Service disruption"
    status: Literal["investigating", "identified", "resolved"] = "investigating"
    if incident.state == "resolved":
        status = "resolved"
    elif any(e.kind == "acknowledged" for e in incident.timeline):
        status = "identified"
    return PublicIncident(
        title=title,
        status=status,
        impact="major" if major else "minor",
        started_at=incident.started_at,
        resolved_at=incident.resolved_at,
        services=services,
        updates=sorted(updates, key=lambda u: u.ts, reverse=True),
    )


def overall_state(statuses: Sequence[ServiceStatus], incidents: int) -> OverallState:
    """The page's headline state from the services' statuses and the active incidents."""
    if not statuses:
        return "unconfigured"
    if "down" in statuses:
        return "major_outage" if all(s == "down" for s in statuses) else "partial_outage"
    if "degraded" in statuses or incidents:
        return "degraded"
    if "maintenance" in statuses:
        return "maintenance"
    if all(s == "unknown" for s in statuses):
        return "unknown"
    return "operational"


def build_page(
    config: StatusPageFile | None,
    *,
    now: datetime,
    window: Sequence[date],
    health: Mapping[str, HealthLike],
    uptime: Mapping[str, Sequence[DayUptime | None]],
    silences: Iterable[Silence] = (),
    incidents: Iterable[IncidentLike] = (),
    notice: str | None = None,
) -> StatusPage:
    """The public page.

    Args:
        config: The status-page file (``None``: there is none).
        now: The current time.
        window: The uptime window's days, oldest first.
        health: Catalog name -> health row (services without one: no data).
        uptime: Catalog name -> its days in ``window`` (``None``: no data that day).
        silences: Silences (only the public ones are shown).
        incidents: Incidents (only their public parts are shown).
        notice: Why the page is incomplete (a source that could not be read).
    """
    if config is None:
        config, configured, notice = StatusPageFile(), False, notice or UNCONFIGURED_NOTICE
    else:
        configured = True
    names = config.public_names()
    maintenance = maintenance_of(silences, names, now)
    under = {n for m in maintenance if m.state == "in_progress" for n in m.services}
    services = []
    for spec in config.services:
        status: ServiceStatus = (
            "maintenance" if spec.name in under else service_status(health.get(spec.service))
        )
        days = list(uptime.get(spec.service, [None] * len(window)))
        overall = overall_uptime(days)
        services.append(
            PublicService(
                name=spec.name,
                group=spec.group,
                description=spec.description,
                status=status,
                status_label=STATUS_LABELS[status],
                uptime_percent=overall,
                uptime_label="no data" if overall is None else f"{_pct(overall)} uptime",
                days=[uptime_day(d, data) for d, data in zip(window, days, strict=True)],
            )
        )
    shown = [p for i in incidents if (p := public_incident(i, names)) is not None]
    active = [p for p in shown if p.status != "resolved"]
    since = now - timedelta(days=len(window))
    past = [p for p in shown if p.status == "resolved" and p.started_at >= since]
    past.sort(key=lambda p: p.started_at, reverse=True)
    state = overall_state([s.status for s in services], len(active))
    return StatusPage(
        title=config.title,
        description=config.description,
        configured=configured,
        notice=notice,
        state=state,
        summary=SUMMARIES[state],
        generated_at=now,
        days=len(window),
        services=services,
        active_incidents=sorted(active, key=lambda p: p.started_at, reverse=True),
        past_incidents=past[:PAST_INCIDENTS_SHOWN],
        maintenance=maintenance,
    )


__all__ = [
    "INVALID_NOTICE",
    "PAST_INCIDENTS_SHOWN",
    "STATUS_PAGE_FILE",
    "UNCONFIGURED_NOTICE",
    "IncidentUpdate",
    "Maintenance",
    "PublicIncident",
    "PublicService",
    "PublicServiceSpec",
    "StatusPage",
    "StatusPageFile",
    "UptimeDay",
    "build_page",
    "load_status_page",
    "maintenance_of",
    "overall_state",
    "public_incident",
    "service_status",
    "status_page_path",
    "uptime_day",
]
