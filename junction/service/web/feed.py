"""The health grid's live feed: one per app, shared by every page and event stream.

One task (running while at least one event stream is open) refreshes the grid's rows at
most once per :data:`REFRESH_SECONDS`, or as soon as the state reports a change, and
renders only the rows whose shown values changed (:meth:`GridRow.key`), once for all
clients: a change of status, down flag or alerts, or a new probe or failing call, at once;
numbers drifting with time alone at most every :data:`DRIFT_SECONDS`. Each stream then
sends the rows changed since the version it last saw: a hundred clients cost one refresh
plus a hundred small writes, not a hundred health computations.

Versions are ``<epoch>-<n>``: ``epoch`` is random per feed, so a client reconnecting to a
restarted server (whose counter started again) gets every row, not a wrong delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from junction.service.web.grid import GridRow, summary

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0
"""The rows are recomputed at least this often while a stream is open."""

MAX_STREAMS = 200
"""Concurrent event streams per process; more get 503 (the page still works)."""

HEARTBEAT_SECONDS = 15.0
"""An idle stream sends a comment this often (proxies keep it open; a gone client shows)."""

DRIFT_SECONDS = 10.0
"""A row whose status, down flag and alerts are unchanged and that saw no new probe or
failing call is re-sent at most this often: its numbers (uptime, score) drift every second
with time alone while a service is down, and a grid of 1,000 rows must not be re-rendered
and re-sent to every client each second. A new probe or failing call is sent at once."""

IDLE_STOP_SECONDS = 10.0
"""The refresh task stops this long after the last stream closed."""

RowsSource = Callable[[], Awaitable[list[GridRow]]]
"""Computes the grid's rows (worst first)."""

WaitChange = Callable[[float], Awaitable[None]]
"""Waits at most the given seconds for the state to change (returns early on a change)."""

RowRenderer = Callable[[GridRow], str]
SummaryRenderer = Callable[[dict[str, int]], str]


@dataclass(frozen=True)
class Snapshot:
    """The grid as of one version: rows in order, their HTML, the summary's HTML."""

    version: str
    rows: Sequence[GridRow]
    html: dict[str, str]
    summary_html: str


class TooManyStreams(Exception):
    """:data:`MAX_STREAMS` streams are open already."""


class HealthFeed:
    """The grid's rows, their rendered HTML and a version that grows with each change.

    Args:
        rows: Computes the rows.
        render_row: One row's HTML (the page's own partial).
        render_summary: The summary line's HTML.
        wait_change: Waits for a change of the state, at most the given seconds (default:
            just sleeps: the rows are recomputed every :data:`REFRESH_SECONDS`).
        max_streams: Concurrent streams allowed.
    """

    def __init__(
        self,
        rows: RowsSource,
        render_row: RowRenderer,
        render_summary: SummaryRenderer,
        *,
        wait_change: WaitChange | None = None,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self._rows_source = rows
        self._render_row = render_row
        self._render_summary = render_summary
        self._wait_change = wait_change or asyncio.sleep
        self.max_streams = max_streams
        self.epoch = secrets.token_hex(4)
        self._n = 0
        self._keys: dict[str, tuple[object, ...]] = {}  # what each row shows
        self._urgent: dict[str, tuple[object, ...]] = {}
        self._rendered_at: dict[str, float] = {}
        self._html: dict[str, str] = {}
        self._changed: dict[str, int] = {}  # service -> the version it last changed in
        self._rows: list[GridRow] = []
        self._summary_html = ""
        self._refreshed_at = -1e9
        self._lock = asyncio.Lock()
        self._event = asyncio.Event()
        self._streams = 0
        self._task: asyncio.Task[None] | None = None
        self._idle_since: float | None = None
        self._closed = False
        self._payloads: dict[tuple[int, int], str] = {}

    # ------------------------------------------------------------------ versions

    @property
    def version(self) -> str:
        """The current version, ``<epoch>-<n>``."""
        return f"{self.epoch}-{self._n}"

    def _parse(self, version: str | None) -> int | None:
        # A version of this feed (same epoch, not ahead of us); anything else: None.
        if not version or "-" not in version:
            return None
        epoch, _, n = version.rpartition("-")
        if epoch != self.epoch or not n.isdigit() or int(n) > self._n:
            return None
        return int(n)

    # ------------------------------------------------------------------ refreshing

    async def refresh(self, max_age: float = 0.0) -> Snapshot:
        """Recompute the rows unless they are at most ``max_age`` s old; the snapshot."""
        async with self._lock:
            if time.monotonic() - self._refreshed_at > max_age:
                await self._refresh()
            return Snapshot(self.version, self._rows, self._html, self._summary_html)

    async def _refresh(self) -> None:
        rows = await self._rows_source()
        now = self._refreshed_at = time.monotonic()
        changed = [r for r in rows if self._needs_render(r, now)]
        gone = set(self._keys) - {r.service for r in rows}
        new_summary = self._render_summary(summary(rows))
        self._rows = rows
        if not changed and not gone and new_summary == self._summary_html:
            return
        self._n += 1
        for row in changed:
            self._keys[row.service] = row.key()
            self._urgent[row.service] = row.urgent_key()
            self._rendered_at[row.service] = now
            self._html[row.service] = self._render_row(row)
            self._changed[row.service] = self._n
        for name in gone:
            self._keys.pop(name, None)
            self._urgent.pop(name, None)
            self._rendered_at.pop(name, None)
            self._html.pop(name, None)
            self._changed.pop(name, None)
        self._summary_html = new_summary
        self._payloads.clear()
        self._event.set()
        self._event = asyncio.Event()

    def _needs_render(self, row: GridRow, now: float) -> bool:
        shown = self._keys.get(row.service)
        if shown is None or shown == row.key():
            return shown is None
        if self._urgent.get(row.service) != row.urgent_key():
            return True
        return now - self._rendered_at.get(row.service, -1e9) >= DRIFT_SECONDS

    async def _run(self) -> None:
        failing = False  # logged once per streak of failures, not every second
        while not self._closed:
            if self._streams == 0:
                if self._idle_since is None:
                    self._idle_since = time.monotonic()
                elif time.monotonic() - self._idle_since > IDLE_STOP_SECONDS:
                    break
            else:
                self._idle_since = None
            try:
                await self._wait_change(REFRESH_SECONDS)
                await self.refresh(max_age=0.2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed read: the streams keep the last rows
                if not failing:
                    log.warning("the health grid could not be refreshed: %s", exc)
                failing = True
                await asyncio.sleep(REFRESH_SECONDS)
            else:
                failing = False
        self._task = None

    # ------------------------------------------------------------------ streams

    def payload(self, after: str | None) -> str | None:
        """The ``rows`` event bringing a client from version ``after`` to now (every row
        when ``after`` is unknown: another process, or none); ``None`` when up to date."""
        since = self._parse(after)
        if since == self._n:
            return None
        key = (-1 if since is None else since, self._n)
        cached = self._payloads.get(key)
        if cached is None:
            names = (
                list(self._html)
                if since is None
                else [n for n, v in self._changed.items() if v > since]
            )
            cached = json.dumps(
                {
                    "version": self.version,
                    "rows": {n: self._html[n] for n in names},
                    "summary": self._summary_html,
                },
                separators=(",", ":"),
            )
            self._payloads[key] = cached
        return cached

    async def wait(self, timeout: float) -> None:
        """Wait for the next change (at most ``timeout`` s)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[None]:
        """Hold one stream's place (starting the refresh task when needed).

        Raises:
            TooManyStreams: :attr:`max_streams` are open.
        """
        if self._streams >= self.max_streams:
            raise TooManyStreams()
        self._streams += 1
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run())
        try:
            yield
        finally:
            self._streams -= 1

    @property
    def streams(self) -> int:
        """Open streams."""
        return self._streams

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called (streams end)."""
        return self._closed

    async def aclose(self) -> None:
        """Stop the refresh task and end the streams (app shutdown)."""
        self._closed = True
        self._event.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = [
    "DRIFT_SECONDS",
    "HEARTBEAT_SECONDS",
    "MAX_STREAMS",
    "REFRESH_SECONDS",
    "HealthFeed",
    "Snapshot",
    "TooManyStreams",
]
