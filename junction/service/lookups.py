"""The errors the routes raise for bad input, in the one shape of :mod:`junction.service.errors`.

:func:`unknown` is a 404 for a name that names nothing (an integration, a spec, an alert,
a silence) with the closest known name offered; :func:`invalid` is a 422 naming the field
at fault, with the same ``details`` list a request validation error carries;
:func:`alert_database_unavailable` is the 503 of a damaged or unopenable alert database.
:class:`ErrorBody` documents that shape in the OpenAPI schema (:func:`error_responses`).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from integrations.yamlconfig import did_you_mean
from junction.alerting.state import AlertDatabaseError
from junction.service.errors import ApiError, ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting ``statuses`` with :class:`ErrorBody` (a 422 listed
    here also replaces FastAPI's default validation-error schema, which is not ours)."""
    return {s: {"model": ErrorBody, "description": HTTPStatus(s).phrase} for s in statuses}


KNOWN_SHOWN = 100
"""Up to this many known names are listed in a 404's ``details.known``."""


def unknown(kind: str, name: str, known: Iterable[str], *, field: str) -> ApiError:
    """A 404 ``unknown_<kind>``: ``unknown integration 'oktaa' (did you mean 'okta'?)``.

    Args:
        kind: What was looked up (``integration``, ``spec``, ``alert``, ``silence``).
        name: What the client sent.
        known: The names that exist.
        field: Where the name came from (``path.name``, ``body.spec``).

    Returns:
        The error; ``details`` names the field and, when there are few, the known names.
    """
    names = sorted(set(known))
    message = f"unknown {kind} {name!r}{did_you_mean(name, names)}"
    details: dict[str, object] = {"field": field}
    if len(names) <= KNOWN_SHOWN:  # alert fingerprints grow with history: not all of them
        details["known"] = names
    return ApiError(404, f"unknown_{kind}", message, details)


def invalid(field: str, message: str) -> ApiError:
    """A 422 ``invalid_request`` naming ``field`` (``body.duration: not a duration``)."""
    return ApiError(
        422, "invalid_request", f"{field}: {message}", [{"field": field, "message": message}]
    )


def alert_database_unavailable(exc: AlertDatabaseError) -> ApiError:
    """A 503 ``alert_database``: the alert database is damaged (the message names
    ``junction alerts reset``) or cannot be opened."""
    return ApiError(503, "alert_database", str(exc))
