"""Log search: ``GET /api/v2/logs/search`` over the call log, alert history and workflow runs.

The same search as ``junction logs search`` (:mod:`junction.logsearch`): newest first, a
page at a time (``next_cursor`` -> ``cursor``), every text redacted. Needs the token.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from junction.logquery import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_SERVICES,
    MAX_TEXT,
    LogQuery,
    LogQueryError,
    parse_query,
)
from junction.logsearch import LogItem, LogPage, register_configured_secrets, search
from junction.service.deps import StateDep, require_token
from junction.service.lookups import error_responses, invalid
from junction.service.state import ServiceState

router = APIRouter(
    prefix="/api/v2/logs",
    tags=["logs"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 422),
)

_PARAM_OF = {"text": "q"}
"""A query field -> its query parameter (others are named alike)."""


class LogEntry(BaseModel):
    """One result: a call, an alert transition or a workflow run (text redacted)."""

    kind: Literal["call", "alert", "workflow"]
    id: str = Field(description="The row's id in the metrics store.")
    ts: datetime = Field(description="When it happened (a run: when it started).")
    service: str | None = Field(description="The integration (calls, alerts).")
    workflow: str | None = Field(description="The workflow (runs).")
    action: str | None = Field(description="The client action (calls), the rule (alerts).")
    request: str | None = Field(description="METHOD path (calls).")
    status: str = Field(
        description="HTTP status (calls; empty when none was received), alert state, run status."
    )
    ok: bool = Field(description="The call succeeded, the alert resolved, the run completed.")
    severity: str | None = Field(description="The alert's severity.")
    error_class: str | None = Field(description="The call's error class.")
    message: str | None = Field(description="The call's or run's error, the alert's message.")
    run_id: str | None = Field(description="The workflow run it belongs to.")
    duration_ms: float | None = Field(description="The call's latency, the run's duration.")

    @classmethod
    def of(cls, item: LogItem) -> LogEntry:
        """From the search's :class:`LogItem`."""
        return cls.model_validate(item.__dict__)


class LogSearchResponse(BaseModel):
    """One page of results, newest first."""

    items: list[LogEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )
    searched_to: datetime | None = Field(
        description="Set when the page stopped at its scan limit before it was full: "
        "entries from this instant on were searched, older ones not yet (next_cursor "
        "goes on)."
    )


def page_query(
    state: StateDep,
    q: Annotated[
        str,
        Query(
            max_length=MAX_TEXT,
            description="Text to find (case-insensitive substring, literal); empty: all.",
        ),
    ] = "",
    service: Annotated[
        list[str] | None,
        Query(max_length=MAX_SERVICES, description="Only these services (repeat for several)."),
    ] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="A duration back from now (1h, 30m, 7d) or ISO time."),
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=64, description="Only entries before: a duration back or ISO time."),
    ] = None,
    status: Annotated[
        str | None,
        Query(max_length=16, description="error, ok or an HTTP status code (calls only)."),
    ] = None,
    kind: Annotated[
        Literal["all", "calls", "alerts", "workflows"], Query(description="Which history.")
    ] = "all",
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Entries per page.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=300, description="The next_cursor of the previous page."),
    ] = None,
) -> LogQuery:
    """The :class:`LogQuery` of a request's query parameters.

    Raises:
        ApiError: 422 naming the parameter (``query.since: ...``).
    """
    register_configured_secrets(state.settings)  # the error may quote what was sent
    try:
        return parse_query(
            q,
            services=service or (),
            since=since,
            until=until,
            status=status,
            kind=kind,
            limit=limit,
            cursor=cursor,
        )
    except LogQueryError as exc:
        raise invalid(f"query.{_PARAM_OF.get(exc.field, exc.field)}", exc.message) from None


QueryDep = Annotated[LogQuery, Depends(page_query)]
"""A route parameter receiving the search the query parameters describe."""


def search_state(state: ServiceState, query: LogQuery) -> LogPage:
    """:func:`~junction.logsearch.search` in the service's store, credentials registered."""
    register_configured_secrets(state.settings)
    return search(state.store(), query)


@router.get(
    "/search",
    summary="Search the call log, alert history and workflow runs",
    response_model=LogSearchResponse,
)
async def search_logs(state: StateDep, query: QueryDep) -> LogSearchResponse:
    """Entries matching the text and filters, newest first, one page at a time."""
    page = await asyncio.to_thread(search_state, state, query)
    return LogSearchResponse(
        items=[LogEntry.of(i) for i in page.items],
        next_cursor=page.next_cursor,
        searched_to=page.searched_to,
    )
