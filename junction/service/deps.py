"""FastAPI dependencies every route uses: the bearer token, the settings, the state.

Every write route and every internal read declares ``Depends(require_token)``; only the
public status reads go without.
"""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from junction.service.errors import ApiError
from junction.service.state import ServiceState
from junction.settings import Settings

# auto_error=False: a missing or malformed header is answered by require_token in the one
# error shape (HTTPBearer's own 403 has another); the scheme still documents the API.
_bearer = HTTPBearer(auto_error=False, description="JUNCTION_API_TOKEN as a bearer token.")


def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState` (``app.state.junction``)."""
    state: ServiceState = request.app.state.junction
    return state


def get_settings_dep(request: Request) -> Settings:
    """The app's settings (those ``create_app`` was given)."""
    return get_state(request).settings


def token_retry_after(request: Request, given: str) -> float | None:
    """Check ``given`` against the token for the request's client address.

    Wrong tokens count against the client (:class:`~junction.service.throttle.AuthThrottle`);
    past the limit even the right token is refused until the window moves on, so a guesser
    learns nothing meanwhile. The comparison takes constant time.

    Returns:
        ``None`` when the token is right (or none is configured), ``0.0`` when it is
        wrong, or the seconds to wait when the client is throttled.
    """
    state = get_state(request)
    expected = state.settings.api_token
    if expected is None:
        return None
    client = request.client.host if request.client is not None else "unknown"
    throttle = state.auth_throttle
    wait = throttle.retry_after(client)
    if wait is not None:
        return max(wait, 1.0)
    if secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"),
        expected.get_secret_value().encode("utf-8", "surrogateescape"),
    ):
        throttle.succeeded(client)
        return None
    throttle.failed(client)
    return 0.0


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Allow the request only with ``Authorization: Bearer <JUNCTION_API_TOKEN>``.

    With no token configured every request is allowed: ``junction serve`` then binds
    loopback only. A request without a token is not a guess and is not counted.

    Raises:
        ApiError: 401 ``unauthorized``; 429 ``too_many_attempts`` after too many wrong
            tokens from the client's address (``JUNCTION_API_AUTH_MAX_FAILURES``).
    """
    if get_settings_dep(request).api_token is None:
        return
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <JUNCTION_API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    wait = token_retry_after(request, credentials.credentials)
    if wait is None:
        return
    if wait > 0:
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many wrong tokens from this address; try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    raise ApiError(
        401, "unauthorized", "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"}
    )


StateDep = Annotated[ServiceState, Depends(get_state)]
"""A route parameter receiving the :class:`ServiceState`."""

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
"""A route parameter receiving the app's settings."""

__all__ = [
    "SettingsDep",
    "StateDep",
    "get_settings_dep",
    "get_state",
    "require_token",
    "token_retry_after",
]
