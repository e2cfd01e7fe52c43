"""``/logs``: log search in the dashboard (the call log, alert history and workflow runs).

The same search as the API and ``junction logs search``
(:func:`junction.service.routes.logs.search_state`): a GET form (it changes nothing, so it
needs no CSRF token), a page of results newest first, and an "older" link carrying the
next page's cursor. A bad field is one line naming it above the form; every value shown,
the form's own included, is redacted and escaped.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from integrations.redaction import redact
from junction.logquery import DEFAULT_LIMIT, KINDS, MAX_LIMIT, LogQueryError, parse_query
from junction.logsearch import LogPage, register_configured_secrets
from junction.service.deps import StateDep
from junction.service.routes.logs import search_state
from junction.service.web import PageDep, render

router = APIRouter(include_in_schema=False)

PAGE = "/logs"
FIELDS = ("q", "service", "since", "until", "status", "kind", "limit")
"""The form's fields (and the query parameters of the page), in the form's order."""
MAX_FIELD = 1000
"""Longest value of a form field taken from the URL (characters)."""
_LABEL_OF = {"text": "search text"}
_SPLIT = re.compile(r"[\s,]+")


def _form(request: Request) -> dict[str, str]:
    """The form's values from the URL (redacted: a secret typed in is not shown back)."""
    params = request.query_params
    values = {name: params.get(name, "").strip()[:MAX_FIELD] for name in FIELDS}
    # `service` may be repeated (links) or hold several names (the form's text field).
    values["service"] = " ".join(
        s for v in params.getlist("service") for s in _SPLIT.split(v[:MAX_FIELD]) if s
    )
    return {name: redact(value) for name, value in values.items()}


def _href(values: dict[str, str], cursor: str | None = None) -> str:
    """The page's URL for ``values`` (empty fields left out) and ``cursor``."""
    pairs = [(k, v) for k, v in values.items() if v and not (k == "kind" and v == "all")]
    if cursor:
        pairs.append(("cursor", cursor))
    return f"{PAGE}?{urlencode(pairs)}" if pairs else PAGE


@router.get(PAGE, response_class=HTMLResponse)
async def logs_page(request: Request, state: StateDep, _session: PageDep) -> HTMLResponse:
    """The search form and one page of results."""
    register_configured_secrets(state.settings)  # before anything typed in is shown back
    values = _form(request)
    cursor = request.query_params.get("cursor", "")[:MAX_FIELD] or None
    searched = any(values[k] for k in FIELDS if k != "kind") or cursor is not None
    error: str | None = None
    page: LogPage | None = None
    try:
        limit = int(values["limit"]) if values["limit"] else DEFAULT_LIMIT
    except ValueError:
        error = f"limit: {values['limit']!r} is not a number"
    else:
        try:
            query = parse_query(
                values["q"],
                services=_SPLIT.split(values["service"]),
                since=values["since"] or None,
                until=values["until"] or None,
                status=values["status"] or None,
                kind=values["kind"] or "all",
                limit=limit,
                cursor=cursor,
            )
        except LogQueryError as exc:
            error = f"{_LABEL_OF.get(exc.field, exc.field)}: {exc.message}"
        else:
            page = await asyncio.to_thread(search_state, state, query)
    return render(
        request,
        "logs.html",
        {
            "form": values,
            "kinds": KINDS,
            "max_limit": MAX_LIMIT,
            "error": error,
            "page": page,
            "searched": searched,
            "older": _href(values, page.next_cursor) if page and page.next_cursor else None,
            "newest": _href(values) if cursor else None,
        },
        active="logs",
        status_code=422 if error else 200,
    )
