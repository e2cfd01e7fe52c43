"""``/``: the health grid, every enabled integration with its status, score, p95,
success rate, uptime, latency sparkline and open alerts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from junction.service.deps import StateDep
from junction.service.web import PageDep, render
from junction.service.web.grid import grid_rows, summary

router = APIRouter(include_in_schema=False)


def window_label(seconds: float) -> str:
    """``900`` -> ``15m``; ``7200`` -> ``2h``; ``45`` -> ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@router.get("/", response_class=HTMLResponse)
async def health_grid(request: Request, state: StateDep, _session: PageDep) -> HTMLResponse:
    """The health grid."""
    health, _ = await state.health()
    rows = grid_rows(health, state.open_alerts())
    return render(
        request,
        "health.html",
        {
            "rows": rows,
            "counts": summary(rows),
            "window_label": window_label(state.window_seconds(None)),
        },
        active="health",
    )
