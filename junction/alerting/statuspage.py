"""Vendor status pages: what the vendor itself says about its health.

Many vendors publish an Atlassian Statuspage whose public ``/api/v2/summary.json`` reads
``{"status": {"indicator": "none|minor|major|critical", "description": ...},
"incidents": [{"name", "status", "impact", "shortlink", ...}], "components": [...]}``
(https://metastatuspage.com/api). :class:`StatusPagePoller` fetches it for a service,
caches it for a short while, and :func:`annotation` turns it into the line the alert
engine attaches to an alert: ``GitLab reports: Partial System Outage — CI/CD pipelines
delayed``.

Which URL a service's page has, in order:

1. ``urls=`` given to the poller;
2. ``JUNCTION_STATUS_PAGE_URLS`` (``service=https://status.example.com,...``; an empty
   URL turns a service off);
3. a service still talking to the sandbox (no ``JUNCTION_<NAME>_BASE_URL``): the
   sandbox's page ``<sandbox_url>/statuspage/v1/pages/<service>``;
4. the ``status_page`` field of the service's entry in the integration catalog
   (``integrations/catalog.yaml``), the one list of vendor status pages;
5. otherwise none (the service is not annotated).

A catalog ``status_page`` names a page that answers the Statuspage
``/api/v2/summary.json`` shape (the full URL, or the page's base URL, to which
:data:`SUMMARY_PATH` is appended).

Failures never reach the caller: a timeout, an HTTP error or a page that does not have
the documented shape gives ``None`` and a logged reason (also kept in
:attr:`StatusPagePoller.last_error`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from integrations.catalog import load_catalog
from junction.settings import Settings, get_settings

log = logging.getLogger("junction.alerting.statuspage")

Indicator = Literal["none", "minor", "major", "critical", "maintenance"]

SUMMARY_PATH = "/api/v2/summary.json"
DEFAULT_TIMEOUT_SECONDS = 5.0


# --- the page's documented shape --------------------------------------------------------


class _Status(BaseModel):
    model_config = ConfigDict(extra="allow")

    indicator: str
    description: str = ""


class _IncidentUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    body: str | None = None
    status: str | None = None


class _Incident(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    status: str = ""
    impact: str = "none"
    shortlink: str | None = None
    updated_at: datetime | None = None
    incident_updates: list[_IncidentUpdate] = Field(default_factory=list)


class _Component(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    status: str = "operational"
    group: bool = False


class _Page(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    url: str | None = None


class _Summary(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: _Status
    incidents: list[_Incident] = Field(default_factory=list)
    components: list[_Component] = Field(default_factory=list)
    page: _Page | None = None


# --- what callers get -------------------------------------------------------------------


@dataclass(frozen=True)
class VendorIncident:
    """One unresolved incident on a vendor's status page.

    Attributes:
        name: Its title ("CI/CD pipelines delayed").
        status: investigating, identified, monitoring, ...
        impact: none, minor, major or critical.
        shortlink: Link to the incident, when the page gives one.
        latest_update: Body of the newest incident update.
    """

    name: str
    status: str
    impact: str
    shortlink: str | None = None
    latest_update: str | None = None


@dataclass(frozen=True)
class VendorStatus:
    """A vendor's own view of its health, from its status page.

    Attributes:
        service: Catalog name.
        indicator: ``none`` (all good), ``minor``, ``major``, ``critical`` (or
            ``maintenance``).
        description: The page's own wording ("Partial System Outage").
        incidents: Unresolved incidents, newest first.
        fetched_at: When the page was read.
        url: The summary URL read.
        vendor: Display name (the page's name, else the catalog title).
        degraded_components: Names of components not ``operational``.
    """

    service: str
    indicator: str
    description: str
    incidents: tuple[VendorIncident, ...]
    fetched_at: datetime
    url: str = ""
    vendor: str = ""
    degraded_components: tuple[str, ...] = ()

    @property
    def degraded(self) -> bool:
        """Whether the vendor reports a problem (an indicator other than none, or incidents)."""
        return self.indicator not in ("none", "") or bool(self.incidents)


def annotation(status: VendorStatus | None) -> str | None:
    """The line to attach to an alert, or ``None`` when the vendor reports nothing wrong.

    Args:
        status: What :meth:`StatusPagePoller.get` returned.

    Returns:
        ``"GitLab reports: Partial System Outage — CI/CD pipelines delayed
        (https://stspg.io/x)"``, or ``None``.
    """
    if status is None or not status.degraded:
        return None
    who = status.vendor or status.service
    text = f"{who} reports: {status.description or status.indicator}"
    if status.incidents:
        first = status.incidents[0]
        text += f" — {first.name}"
        if len(status.incidents) > 1:
            text += f" (+{len(status.incidents) - 1} more)"
        if first.shortlink:
            text += f" ({first.shortlink})"
    elif status.degraded_components:
        text += " — " + ", ".join(status.degraded_components[:3])
    return text


def parse_summary(service: str, data: Any, *, url: str = "", vendor: str = "") -> VendorStatus:
    """Read a ``summary.json`` body into a :class:`VendorStatus`.

    Raises:
        ValueError: The body does not have the documented shape (the message says how).
    """
    try:
        summary = _Summary.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise ValueError(f"not a Statuspage summary ({problems})") from None
    incidents = tuple(
        VendorIncident(
            name=i.name,
            status=i.status,
            impact=i.impact,
            shortlink=i.shortlink,
            latest_update=(i.incident_updates[0].body if i.incident_updates else None),
        )
        for i in summary.incidents
        if i.status not in ("resolved", "postmortem", "completed")
    )
    degraded = tuple(
        c.name
        for c in summary.components
        if not c.group and c.status not in ("operational", "under_maintenance")
    )
    name = (summary.page.name if summary.page else None) or vendor or service
    return VendorStatus(
        service=service,
        indicator=summary.status.indicator,
        description=summary.status.description,
        incidents=incidents,
        fetched_at=datetime.now(UTC),
        url=url,
        vendor=name,
        degraded_components=degraded,
    )


def _parse_overrides(raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        service, sep, url = part.partition("=")
        if not sep or not service.strip():
            raise ValueError(f"JUNCTION_STATUS_PAGE_URLS: expected service=URL, got {part!r}")
        found[service.strip()] = url.strip()
    return found


def status_page_url(
    service: str, settings: Settings | None = None, urls: Mapping[str, str] | None = None
) -> str | None:
    """The ``summary.json`` URL of ``service``'s status page, or ``None`` (see module doc).

    Args:
        service: Catalog name.
        settings: Settings (sandbox URL, overrides); default :func:`get_settings`.
        urls: Overrides from the alerting configuration (service -> page base URL;
            an empty string turns the service off).
    """
    settings = settings or get_settings()
    catalog = load_catalog()
    base: str | None
    if urls is not None and service in urls:
        base = urls[service]
    else:
        overrides = _parse_overrides(settings.status_page_urls)
        if service in overrides:
            base = overrides[service]
        elif service in catalog and settings.integration(service).base_url is None:
            base = f"{settings.sandbox_url}/statuspage/v1/pages/{service}"
        elif service in catalog:
            base = catalog.get(service).status_page
        else:
            base = None
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith(".json") else base + SUMMARY_PATH


def _vendor_title(service: str) -> str:
    catalog = load_catalog()
    return catalog.get(service).title if service in catalog else service


class StatusPagePoller:
    """Fetches and caches vendor status pages; never raises into the caller.

    Use one per process (the monitor's), ``await poller.get("gitlab")`` when an alert
    fires, and ``await poller.aclose()`` at the end.

    Args:
        settings: Settings (default :func:`get_settings`).
        urls: Per-service page URLs from the alerting configuration (win over settings).
        ttl_seconds: Cache lifetime (default ``JUNCTION_STATUS_PAGE_CACHE_SECONDS``, 60).
            A failed fetch is cached as well, so a dead page is not hammered.
        timeout_seconds: Budget of one fetch.
        http: A shared ``httpx.AsyncClient`` (not closed here); default an own one.
        clock: Monotonic clock (tests).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        urls: Mapping[str, str] | None = None,
        ttl_seconds: float | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        http: httpx.AsyncClient | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.settings = settings or get_settings()
        self.urls = dict(urls or {})
        self.ttl = self.settings.status_page_cache_seconds if ttl_seconds is None else ttl_seconds
        self.timeout = timeout_seconds
        self._http = http
        self._owns_http = http is None
        self._clock = clock
        self._cache: dict[str, tuple[float, VendorStatus | None]] = {}
        self._inflight: dict[str, asyncio.Future[VendorStatus | None]] = {}
        self.last_error: dict[str, str] = {}
        self.fetches = 0

    def url(self, service: str) -> str | None:
        """The summary URL used for ``service`` (``None``: it has no known page)."""
        return status_page_url(service, self.settings, self.urls)

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client (created on first use)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=True,
                headers={"Accept": "application/json", "User-Agent": "junction-statuspage"},
            )
        return self._http

    async def get(self, service: str) -> VendorStatus | None:
        """The vendor's status (cached up to the TTL), or ``None`` with a logged reason.

        Concurrent calls for one service share one fetch.
        """
        now = self._clock()
        cached = self._cache.get(service)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        pending = self._inflight.get(service)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[VendorStatus | None] = asyncio.get_running_loop().create_future()
        self._inflight[service] = future
        try:
            result = await self._fetch(service)
            self._cache[service] = (self._clock(), result)
            future.set_result(result)
            return result
        except BaseException as exc:  # cancellation: let waiters see nothing, not hang
            future.set_result(None)
            if isinstance(exc, Exception):
                return None
            raise
        finally:
            self._inflight.pop(service, None)

    async def get_many(self, services: Iterable[str]) -> dict[str, VendorStatus | None]:
        """:meth:`get` for several services at once."""
        names = list(dict.fromkeys(services))
        found = await asyncio.gather(*(self.get(s) for s in names))
        return dict(zip(names, found, strict=True))

    async def annotation(self, service: str) -> str | None:
        """``annotation(await self.get(service))``."""
        return annotation(await self.get(service))

    def polled(self, service: str) -> bool:
        """Whether ``service``'s page was read (or tried) by this poller."""
        return service in self._cache

    def cached(self, service: str) -> VendorStatus | None:
        """The last status read for ``service``, however old (``fetched_at`` says when);
        ``None`` when never read or the last read failed. Never fetches."""
        entry = self._cache.get(service)
        return entry[1] if entry is not None else None

    def invalidate(self, service: str | None = None) -> None:
        """Forget the cached page of ``service`` (default: all)."""
        if service is None:
            self._cache.clear()
        else:
            self._cache.pop(service, None)

    def _fail(self, service: str, reason: str) -> None:
        self.last_error[service] = reason
        log.warning("status page of %s unusable: %s", service, reason)

    async def _fetch(self, service: str) -> VendorStatus | None:
        url = self.url(service)
        if url is None:
            return None
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout + 1):
                response = await self.http.get(url, timeout=self.timeout)
        except (TimeoutError, httpx.TimeoutException):
            self._fail(service, f"no answer from {url} within {self.timeout:g}s")
            return None
        except httpx.HTTPError as exc:
            self._fail(service, f"cannot fetch {url}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code != 200:
            self._fail(service, f"HTTP {response.status_code} from {url}")
            return None
        try:
            data = response.json()
        except ValueError:
            start = response.text[:60].strip().replace("\n", " ")
            self._fail(service, f"{url} is not JSON (starts {start!r})")
            return None
        try:
            status = parse_summary(service, data, url=url, vendor=_vendor_title(service))
        except ValueError as exc:
            self._fail(service, f"{url}: {exc}")
            return None
        self.last_error.pop(service, None)
        return status

    async def aclose(self) -> None:
        """Close the owned HTTP client."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None
