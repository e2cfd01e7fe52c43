"""Browser sessions of the dashboard: signed cookies, a bounded table of logged-in
sessions, and the per-session CSRF token.

Every browser gets a session cookie ``<id>.<signature>`` (a random id, signed with
HMAC-SHA256). An anonymous session needs no server state: its id is only the seed of its
CSRF token. Logging in (the API token, :mod:`junction.service.pages.auth`) gives the
browser a *new* id (no session fixation) recorded in a bounded, idle-expiring table;
logging out drops it.

The signing key is random per process, not derived from ``JUNCTION_API_TOKEN``: the
logged-in table lives in memory, so a restart ends every login anyway, and a random key
means a cookie or CSRF token never reveals anything about the API token nor stays valid
after the token is rotated and the service restarted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE_NAME = "junction_session"
"""The session cookie's name."""

MAX_SESSIONS = 1000
"""Logged-in sessions kept; beyond, the least recently used one is logged out."""

IDLE_SECONDS = 12 * 3600.0
"""A logged-in session unused this long is logged out."""


@dataclass
class Session:
    """One browser's session.

    Attributes:
        id: Random id (the cookie carries it, signed).
        logged_in: Whether it logged in with the API token.
        csrf_token: The token its forms and htmx requests send back.
        issued: The cookie must be (re)sent with this response (new or rotated id).
    """

    id: str
    logged_in: bool
    csrf_token: str
    issued: bool = False


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SessionManager:
    """Issues, verifies and rotates sessions (one per app).

    Args:
        max_sessions: Logged-in sessions kept (least recently used dropped first).
        idle_seconds: A logged-in session unused this long is logged out.
        key: Signing key (default: 32 random bytes, new in each process).
    """

    def __init__(
        self,
        *,
        max_sessions: int = MAX_SESSIONS,
        idle_seconds: float = IDLE_SECONDS,
        key: bytes | None = None,
    ) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)
        self._max = max_sessions
        self._idle = idle_seconds
        self._logged_in: OrderedDict[str, float] = OrderedDict()  # id -> last use (monotonic)
        self._lock = threading.Lock()

    def _mac(self, purpose: str, session_id: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{session_id}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    def cookie_value(self, session: Session) -> str:
        """The cookie carrying ``session``: ``<id>.<signature>``."""
        return f"{session.id}.{self._mac('session', session.id)}"

    def _session(self, session_id: str, *, issued: bool) -> Session:
        return Session(
            id=session_id,
            logged_in=self._touch(session_id),
            csrf_token=self._mac("csrf", session_id),
            issued=issued,
        )

    def _touch(self, session_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._logged_in.get(session_id)
            if last is None:
                return False
            if now - last > self._idle:
                del self._logged_in[session_id]
                return False
            self._logged_in[session_id] = now
            self._logged_in.move_to_end(session_id)
            return True

    def from_cookie(self, value: str | None) -> Session | None:
        """The session a cookie value carries, or ``None`` when it is absent or forged."""
        if not value or value.count(".") != 1:
            return None
        session_id, signature = value.split(".")
        expected = self._mac("session", session_id)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        return self._session(session_id, issued=False)

    def anonymous(self) -> Session:
        """A new anonymous session (its cookie is sent with the response)."""
        return self._session(secrets.token_urlsafe(24), issued=True)

    def login(self, old: Session) -> Session:
        """Log in: ``old`` is dropped and a new id is issued and recorded (no fixation)."""
        self.logout(old)
        session_id = secrets.token_urlsafe(24)
        with self._lock:
            self._logged_in[session_id] = time.monotonic()
            while len(self._logged_in) > self._max:
                self._logged_in.popitem(last=False)
        return self._session(session_id, issued=True)

    def logout(self, session: Session) -> Session:
        """Log out ``session``; the browser gets a new anonymous session."""
        with self._lock:
            self._logged_in.pop(session.id, None)
        return self.anonymous()

    def is_logged_in(self, session_id: str) -> bool:
        """Whether ``session_id`` is (still) logged in (its last use is not updated)."""
        with self._lock:
            last = self._logged_in.get(session_id)
        return last is not None and time.monotonic() - last <= self._idle

    def check_csrf(self, session: Session, given: str | None) -> bool:
        """Whether ``given`` is ``session``'s CSRF token (constant-time comparison)."""
        if not given:
            return False
        return hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), session.csrf_token.encode()
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._logged_in)


__all__ = ["COOKIE_NAME", "IDLE_SECONDS", "MAX_SESSIONS", "Session", "SessionManager"]
