"""One-time messages after a form post (post/redirect/get): the POST route records what
happened with :func:`flash` and answers :func:`see_other`; the page it redirects to shows
:func:`take_flashes` once.

Kept in memory per browser session (its id), never in the URL, so a link cannot make the
page say something the operator did not do.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from fastapi.responses import RedirectResponse

from junction.service.web import request_session

MAX_SESSIONS = 1000
"""Sessions with pending messages kept (oldest dropped first)."""

MAX_CHARS = 500
"""A message longer than this is cut (it may quote what the user typed)."""


@dataclass(frozen=True)
class Flash:
    """A message: ``ok`` (done) or ``error`` (nothing was done, and why)."""

    kind: Literal["ok", "error"]
    text: str


class _Box:
    def __init__(self) -> None:
        self.pending: OrderedDict[str, list[Flash]] = OrderedDict()
        self.lock = threading.Lock()


def _box(request: Request) -> _Box:
    box: _Box | None = getattr(request.app.state, "flashes", None)
    if box is None:
        box = request.app.state.flashes = _Box()
    return box


def flash(request: Request, text: str, kind: Literal["ok", "error"] = "ok") -> None:
    """Show ``text`` on the next page this browser session loads."""
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1] + "…"
    box = _box(request)
    key = request_session(request).id
    with box.lock:
        box.pending.setdefault(key, []).append(Flash(kind, text))
        box.pending.move_to_end(key)
        while len(box.pending) > MAX_SESSIONS:
            box.pending.popitem(last=False)


def take_flashes(request: Request) -> list[Flash]:
    """The session's pending messages (removed: each is shown once)."""
    box = _box(request)
    with box.lock:
        return box.pending.pop(request_session(request).id, [])


def see_other(path: str) -> RedirectResponse:
    """303 to ``path`` (a page of this site): the browser loads it with GET."""
    return RedirectResponse(path, status_code=303)


__all__ = ["Flash", "flash", "see_other", "take_flashes"]
