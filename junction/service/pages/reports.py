"""``/reports/latest``: the last HTML analytics report, as the analytics-report flow (or
``junction analytics report``) wrote it under the report directory (``<home>/reports``);
the flow's ``analytics-report-page`` link artifact points here from the Prefect UI.

The report is a self-contained page the report renderer escaped (inline style and SVG,
no script): it is sent as it is, with a policy allowing its inline style and nothing else.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from analytics.report.pipeline import report_dir
from junction.service.deps import SettingsDep
from junction.service.web import PageDep

router = APIRouter(include_in_schema=False)

REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
"""The report's policy: its own inline style and data: images; no script, no fetches."""


@router.get("/reports/latest", response_class=HTMLResponse)
async def latest_report(settings: SettingsDep, _session: PageDep) -> HTMLResponse:
    """The last report written, or a 404 saying how to make one."""
    path = report_dir(settings) / "report.html"
    try:
        html = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return HTMLResponse(
            "<!doctype html><title>No report yet</title><p>No analytics report yet: run the "
            "analytics-report deployment or <code>junction analytics report</code>.</p>",
            status_code=404,
        )
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})
