"""The dashboard's npm files (uPlot, htmx), served locally at ``/static/vendor/<name>``.

They come from the repository's ``node_modules`` (``npm ci`` installs them from
``package.json``), or from ``JUNCTION_UI_VENDOR_DIR``: a ``node_modules`` directory or one
holding the files themselves. Without them the pages still work (tables, no charts).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from junction.service.errors import ApiError
from junction.settings import Settings

PACKAGE_ROOT = Path(__file__).resolve().parents[3]
"""The source tree holding ``junction/`` (and, in a checkout, ``node_modules/``)."""

VENDOR_FILES: dict[str, str] = {
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
}
"""Served name -> path inside ``node_modules``."""


def vendor_root(settings: Settings) -> Path:
    """``JUNCTION_UI_VENDOR_DIR``, or the repository's ``node_modules``."""
    return settings.ui_vendor_dir or PACKAGE_ROOT / "node_modules"


def find_vendor_files(settings: Settings) -> dict[str, Path]:
    """The vendor files found: served name -> file (missing ones left out)."""
    root = vendor_root(settings)
    found: dict[str, Path] = {}
    for name, inside in VENDOR_FILES.items():
        for candidate in (root / name, root / inside):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def vendor_warning(settings: Settings) -> str | None:
    """One line saying which vendor files are missing and how to install them, or ``None``."""
    missing = sorted(set(VENDOR_FILES) - set(find_vendor_files(settings)))
    if not missing:
        return None
    return (
        f"dashboard without charts: {', '.join(missing)} not found in {vendor_root(settings)}; "
        f"run `npm ci` in {PACKAGE_ROOT} (or set JUNCTION_UI_VENDOR_DIR)"
    )


router = APIRouter(include_in_schema=False)


@router.get("/static/vendor/{name}")
async def vendor_file(name: str, request: Request) -> FileResponse:
    """One vendor file (only the known names; 404 when not installed)."""
    files: dict[str, Path] = request.app.state.web.vendor
    path = files.get(name)
    if path is None:
        raise ApiError(
            404,
            "not_found",
            f"no vendor file {name!r} (known: {', '.join(sorted(VENDOR_FILES))}; "
            "installed by `npm ci`)",
        )
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})


__all__ = ["VENDOR_FILES", "find_vendor_files", "router", "vendor_root", "vendor_warning"]
