"""``/api/v2/integrations``: the catalog, and one recorded health check of an integration.

The same functions as ``junction integrations list|check``: the catalog
(:func:`integrations.catalog.load_catalog`) and :func:`junction.health.run_sweep`, which
records the probe and its calls in the metrics store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from integrations.catalog import IntegrationSpec, load_catalog
from integrations.errors import IntegrationError, UnknownCapabilityError
from junction.clients import sweep
from junction.health import run_sweep
from junction.service.deps import SettingsDep, StateDep, require_token
from junction.service.errors import ApiError
from junction.service.lookups import error_responses, invalid, unknown
from junction.settings import Settings

router = APIRouter(
    prefix="/api/v2/integrations",
    tags=["integrations"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)


class HealthEndpoint(BaseModel):
    """The vendor's cheapest authenticated request, used as the health check."""

    method: str
    path: str


class Integration(BaseModel):
    """One catalog entry, with the base URL this service uses for it."""

    name: str
    title: str
    capabilities: list[str]
    provides: dict[str, str]
    auth: str
    base_url: str
    vendor_base_url: str
    health: HealthEndpoint
    enabled: bool
    typed_client: str | None
    status_page: str | None


class IntegrationList(BaseModel):
    """The catalog (or the part of it with a capability)."""

    integrations: list[Integration]


class HealthCheck(BaseModel):
    """The outcome of one health check (a probe)."""

    integration: str
    ok: bool
    status: int | None
    latency_ms: float
    attempts: int
    breaker_state: str
    error_class: str | None
    error: str | None
    checked_at: datetime
    recorded: bool


def effective_base_url(spec: IntegrationSpec, settings: Settings) -> str:
    """Where this process sends ``spec``'s requests: the configured base URL, else the
    sandbox's mount (and its SMTP port for an SMTP integration)."""
    configured = settings.integration(spec.name).base_url
    if configured:
        return configured
    url = spec.sandbox_base_url(settings.sandbox_url)
    return f"{url}:{settings.sandbox_smtp_port}" if spec.transport == "smtp" else url


@router.get("", response_model=IntegrationList, summary="List the integration catalog")
def list_integrations(
    settings: SettingsDep,
    capability: Annotated[
        str | None,
        Query(description="Only integrations with this capability tag or capability action."),
    ] = None,
) -> IntegrationList:
    """Every integration: capabilities, auth, base URL, health check, enabled or not."""
    catalog = load_catalog()
    try:
        specs = catalog.with_capability(capability) if capability else list(catalog)
    except UnknownCapabilityError as exc:
        raise invalid("query.capability", exc.message) from None
    try:
        enabled = set(settings.enabled_names(catalog.names))
    except ValueError as exc:
        raise ApiError(500, "invalid_configuration", str(exc)) from None
    return IntegrationList(
        integrations=[
            Integration(
                name=s.name,
                title=s.title,
                capabilities=list(s.capabilities),
                provides={k: p.action for k, p in s.provides.items()},
                auth=s.auth.scheme,
                base_url=effective_base_url(s, settings),
                vendor_base_url=s.base_url,
                health=HealthEndpoint(method=s.health.method, path=s.health.path),
                enabled=s.name in enabled,
                typed_client=s.client,
                status_page=s.status_page,
            )
            for s in specs
        ]
    )


@router.post(
    "/{name}/check",
    response_model=HealthCheck,
    responses=error_responses(400, 404),
    summary="Health-check one integration now",
)
async def check_integration(
    name: str,
    state: StateDep,
    record: Annotated[
        bool, Query(description="Record the probe and its calls in the metrics store.")
    ] = True,
) -> HealthCheck:
    """Probe ``name`` once through its real client; a failing service is a result
    (``ok: false``), not an error."""
    catalog = load_catalog()
    if name not in catalog:
        raise unknown("integration", name, catalog.names, field="path.name")
    try:
        if record:
            _, results = await run_sweep([name], settings=state.settings, store=state.store())
        else:
            results = await sweep([name], settings=state.settings)
    except IntegrationError as exc:
        raise ApiError(400, "integration_error", exc.message) from None
    r = results[0]
    return HealthCheck(
        integration=r.service,
        ok=r.ok,
        status=r.status,
        latency_ms=round(r.latency_ms, 1),
        attempts=r.attempts,
        breaker_state=r.breaker_state,
        error_class=r.error_class,
        error=r.error,
        checked_at=r.checked_at,
        recorded=record,
    )
