"""Integration clients configured from Junction's settings: what core code calls.

``integrations`` takes its configuration as explicit objects and never reads the
environment; this module builds those objects from :class:`~junction.settings.Settings`
(``JUNCTION_*``) and passes them on. Core, tasks, flows and the CLI build clients and run
sweeps through here, never through ``integrations.registry``/``integrations.sweep``
directly, so every client sees the same configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from integrations.base import HealthResult, IntegrationClient
from integrations.catalog import load_catalog
from integrations.metrics import MetricSink
from integrations.registry import get_action
from integrations.registry import get_client as build_client
from integrations.sweep import sweep as run_checks
from junction.settings import Settings, get_settings

__all__ = ["enabled_names", "get_action", "get_client", "sweep"]


def get_client(name: str, settings: Settings | None = None, **kwargs: Any) -> IntegrationClient:
    """The client of integration ``name``, configured by ``settings``.

    Args:
        name: Catalog name (``okta``).
        settings: Settings (default: the process's, :func:`get_settings`).
        **kwargs: Passed to the client (``base_url``, ``http``, ``credentials``, ``retry``,
            ``breaker``, ``timeout``, ``source``, ``run_id``, ``metric_hook``...); a
            ``config`` or ``engine`` given here wins over the settings'.

    Raises:
        ConfigurationError: Unknown integration, bad base URL, missing credentials.
    """
    settings = settings or get_settings()
    kwargs.setdefault("engine", settings.engine_config())
    kwargs.setdefault("config", settings.integration(name))
    return build_client(name, **kwargs)


def enabled_names(settings: Settings | None = None) -> list[str]:
    """The integrations ``JUNCTION_INTEGRATIONS`` enables, in catalog order.

    Raises:
        ValueError: The setting names an integration the catalog lacks.
    """
    return (settings or get_settings()).enabled_names(load_catalog().names)


async def sweep(
    names: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    concurrency: int | None = None,
    source: str = "probe",
    run_id: str | None = None,
    metric_hook: MetricSink | None = None,
    max_attempts: int = 1,
) -> list[HealthResult]:
    """:func:`integrations.sweep.sweep` configured by ``settings`` (the other arguments
    are passed on).

    Args:
        names: Catalog names; default: every enabled integration (``JUNCTION_INTEGRATIONS``).
        settings: Settings (default: the process's).

    Raises:
        UnknownIntegrationError: If a name is not in the catalog.
        ValueError: ``JUNCTION_INTEGRATIONS`` names an unknown integration.
    """
    settings = settings or get_settings()
    return await run_checks(
        enabled_names(settings) if names is None else names,
        engine=settings.engine_config(),
        configs=settings.integration,
        concurrency=concurrency,
        source=source,
        run_id=run_id,
        metric_hook=metric_hook,
        max_attempts=max_attempts,
    )
