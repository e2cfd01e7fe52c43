"""``/status``: the public status page (anonymous, read-only, shareable).

No login: it shows only what the status-page file makes public
(:mod:`junction.service.public`), the same model as ``GET /api/v2/status/page``.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from junction.service.deps import StateDep
from junction.service.public import PublicService
from junction.service.public_page import public_status
from junction.service.web import render

router = APIRouter(include_in_schema=False)


def grouped(services: Sequence[PublicService]) -> list[tuple[str | None, list[PublicService]]]:
    """Services under their group headings, in the file's order (a group where it first
    appears; services without a group under ``None``)."""
    groups: dict[str | None, list[PublicService]] = {}
    for service in services:
        groups.setdefault(service.group, []).append(service)
    return list(groups.items())


@router.get("/status", response_class=HTMLResponse)
async def status_page(request: Request, state: StateDep) -> HTMLResponse:
    """The public status page."""
    page = await public_status(state).page()
    return render(
        request,
        "status.html",
        {"page": page, "groups": grouped(page.services)},
        active="status",
    )
