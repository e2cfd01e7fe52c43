"""Gathering the public status page of one running service.

:func:`public_status` gives the app's :class:`PublicStatus`: it reads the status-page file
(again only when it changed), the current health of the public services, their daily
uptime (:class:`~junction.service.uptime.UptimeHistory`, past days cached), the public
silences and the incidents, and builds the :class:`~junction.service.public.StatusPage`
(:func:`~junction.service.public.build_page`). The page is anonymous, so it is rebuilt at
most every :data:`LIVE_SECONDS`: a flood of requests cannot make the server scan the store
on each one. A source that cannot be read (a damaged alert database, a store error) leaves
its part of the page empty with a notice; the page itself always answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.catalog import load_catalog
from integrations.yamlconfig import ConfigError
from junction.alerting import state as alert_state
from junction.alerting.silences import Silence, list_silences
from junction.incidents import list_incidents
from junction.service.errors import ApiError
from junction.service.public import (
    INVALID_NOTICE,
    IncidentLike,
    StatusPage,
    StatusPageFile,
    build_page,
    load_status_page,
    status_page_path,
)
from junction.service.state import ServiceState
from junction.service.uptime import DAYS, UptimeHistory, hold_seconds, window

log = logging.getLogger(__name__)

LIVE_SECONDS = 5.0
"""The page is rebuilt at most this often."""


@dataclass(frozen=True)
class _Loaded:
    key: tuple[int, int, int, int] | None  # alert_state.file_identity; None: no file
    config: StatusPageFile | None
    notice: str | None


class PublicStatus:
    """The public status page of one service (see the module docstring).

    Args:
        state: The service's state (settings, store, health).
    """

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.history = UptimeHistory(
            lambda sql, params: state.store().query(sql, params),
            hold_seconds(state.settings.monitor_interval_seconds),
        )
        self._loaded: _Loaded | None = None
        self._page: tuple[float, StatusPage] | None = None
        self._lock = asyncio.Lock()
        self.live_seconds = LIVE_SECONDS

    def config(self) -> tuple[StatusPageFile | None, str | None]:
        """The status-page file (``None``: none or invalid) and a notice when invalid.

        An invalid file is logged once per change, with every problem located; the page
        only says that it is invalid (the problems name files and catalog names).
        """
        path = status_page_path(self.state.settings)
        key = alert_state.file_identity(path)
        loaded = self._loaded
        if loaded is not None and loaded.key == key:
            return loaded.config, loaded.notice
        try:
            config, notice = load_status_page(path, load_catalog().names), None
        except (ConfigError, OSError) as exc:
            log.warning("the status page's configuration is invalid: %s", exc)
            config, notice = None, INVALID_NOTICE
        self._loaded = _Loaded(key, config, notice)
        return config, notice

    async def page(self) -> StatusPage:
        """The page, rebuilt when older than :attr:`live_seconds` (:data:`LIVE_SECONDS`)."""
        async with self._lock:
            cached = self._page
            if cached is not None and time.monotonic() - cached[0] < self.live_seconds:
                return cached[1]
            page = await self._build(datetime.now(UTC))
            self._page = (time.monotonic(), page)
            return page

    async def warm(self) -> None:
        """Build the page once ahead of the first visitor: the first build reads the whole
        uptime window (seconds over a large store), later ones only the recent days."""
        try:
            await self.page()
        except Exception:  # a start-up convenience: the first request builds it instead
            log.exception("status page: warming up failed")

    async def _build(self, now: datetime) -> StatusPage:
        config, notice = self.config()
        notices = [notice] if notice else []
        names = [s.service for s in config.services] if config is not None else []
        days = window(now, DAYS)
        health: dict[str, Any] = {}
        uptime: dict[str, Any] = {}
        if names:
            try:
                rows, _ = await self.state.health(names)
                health = {r.service: r for r in rows}
            except ApiError as exc:
                log.warning("status page: current health unavailable: %s", exc.message)
                notices.append("Current status is unavailable right now.")
            try:
                uptime = await asyncio.to_thread(self.history.days, names, now)
            except Exception:  # the store's errors are DuckDB's, OS and lock errors
                log.exception("status page: uptime history unavailable")
                notices.append("Uptime history is unavailable right now.")
        silences, incidents, problem = await asyncio.to_thread(self._alert_records, now)
        if problem:
            notices.append(problem)
        return build_page(
            config,
            now=now,
            window=days,
            health=health,
            uptime=uptime,
            silences=silences,
            incidents=incidents,
            notice=" ".join(notices) or None,
        )

    def _alert_records(self, now: datetime) -> tuple[list[Silence], list[IncidentLike], str | None]:
        """Silences and incidents of the window, or why they cannot be read."""
        settings = self.state.settings
        path = alert_state.db_path(settings)
        if not path.exists():  # nothing fired or was silenced yet: an anonymous read creates none
            return [], [], None
        try:
            conn = alert_state.connect(path)
            try:
                silences = list_silences(conn, now)
            finally:
                conn.close()
        except alert_state.AlertDatabaseError as exc:
            log.warning("status page: %s", exc)
            return [], [], "Incidents and maintenance are unavailable right now."
        try:
            incidents: list[IncidentLike] = list(
                list_incidents(settings, since=now - timedelta(days=DAYS))
            )
        except Exception:  # grouping reads the alerting file and the store: the page still answers
            log.exception("status page: incidents unavailable")
            return silences, [], "Incidents are unavailable right now."
        return silences, incidents, None


_PAGES: weakref.WeakKeyDictionary[ServiceState, PublicStatus] = weakref.WeakKeyDictionary()


def public_status(state: ServiceState) -> PublicStatus:
    """The :class:`PublicStatus` of the app whose state is ``state`` (made on first use)."""
    found = _PAGES.get(state)
    if found is None:
        found = _PAGES[state] = PublicStatus(state)
    return found


__all__ = ["LIVE_SECONDS", "PublicStatus", "public_status"]
