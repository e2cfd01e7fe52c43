"""FastAPI dependencies every route uses: the bearer token, the settings, the state.

Every write route and every internal read declares ``Depends(require_token)``; only the
public status reads go without.
"""

from __future__ import annotations

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


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Allow the request only with ``Authorization: Bearer <JUNCTION_API_TOKEN>``.

    With no token configured every request is allowed: ``junction serve`` then binds
    loopback only. The comparison takes constant time.

    Raises:
        ApiError: 401 ``unauthorized``.
    """
    expected = get_settings_dep(request).api_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(
        given.encode("utf-8", "surrogateescape"),
        expected.get_secret_value().encode("utf-8", "surrogateescape"),
    ):
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <JUNCTION_API_TOKEN>)"
            if credentials is None
            else "the bearer token is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )


StateDep = Annotated[ServiceState, Depends(get_state)]
"""A route parameter receiving the :class:`ServiceState`."""

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
"""A route parameter receiving the app's settings."""

__all__ = ["SettingsDep", "StateDep", "get_settings_dep", "get_state", "require_token"]
