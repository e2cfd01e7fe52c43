"""The service's one error shape: ``{"error": {"code", "message", "details"}}``.

Every failure a client can see goes through here: an :class:`ApiError` raised by a route,
a request that fails validation (the field named), malformed JSON, an HTTP error raised by
routing (404, 405), a body over the size limit (413, :mod:`junction.service.app`) and any
unexpected exception (500: logged here, no traceback in the body).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

Details = dict[str, Any] | list[Any] | None


class ErrorInfo(BaseModel):
    """What went wrong: a stable code, one line for a human, structured details."""

    code: str = Field(description="Stable machine-readable code (unknown_service ...).")
    message: str = Field(description="One line naming the input at fault.")
    details: Any = Field(None, description="The field(s) at fault, the limit, the choices.")


class ErrorBody(BaseModel):
    """The one error shape of the API: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "A field is invalid (named in details)."},
    "4XX": {
        "model": ErrorBody,
        "description": "Malformed JSON, no or a wrong token, an unknown service or endpoint, "
        "a body over the limit.",
    },
    "5XX": {"model": ErrorBody, "description": "An internal error (logged by the server)."},
}
"""Documented on every operation (``FastAPI(responses=...)``): the one error shape."""


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "details"}}`` with ``status``.

    Args:
        status: HTTP status code.
        code: Stable machine-readable code (``unknown_service``, ``unauthorized``).
        message: One line for a human, naming the input at fault.
        details: Anything structured that helps (the field, the choices).
        headers: Extra response headers (``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Details = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def error_body(code: str, message: str, details: Details = None) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Details = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A :class:`JSONResponse` carrying :func:`error_body`."""
    return JSONResponse(
        error_body(code, message, details), status_code=status, headers=dict(headers or {})
    )


def status_code_name(status: int) -> str:
    """``404`` -> ``not_found``: the code of an HTTP error that carries no code of its own."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _field(loc: Sequence[Any]) -> str:
    # ("body", "spec", 0) -> "body.spec[0]"; the location names where the value came from.
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        where = first.get("ctx", {}).get("error", "")
        return error_response(
            400,
            "malformed_json",
            f"request body is not valid JSON{f': {where}' if where else ''}",
            {"field": "body"},
        )
    if isinstance(exc.body, bytes | bytearray) and any(
        e.get("loc", ("",))[0] == "body" for e in errors
    ):
        # FastAPI hands a route its raw bytes when the body is not declared JSON.
        return error_response(
            415,
            "unsupported_media_type",
            "request body must be JSON (Content-Type: application/json)",
            {"field": "body", "expected": "application/json"},
        )
    problems = [
        # `input` is left out: it may be a secret the caller sent in the wrong field.
        {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in errors
    ]
    first_problem = problems[0] if problems else {"field": "request", "message": "invalid"}
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return error_response(
        422,
        "invalid_request",
        f"{first_problem['field']}: {first_problem['message']}{more}",
        problems,
    )


_UNPARSABLE_BODY = "There was an error parsing the body"
"""FastAPI's 400 for a JSON body it could not decode (bad UTF-8, recursion too deep)."""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else status_code_name(exc.status_code)
    if exc.status_code == 400 and detail == _UNPARSABLE_BODY:
        return error_response(
            400,
            "malformed_json",
            "request body is not valid JSON (not UTF-8, or nested too deeply)",
            {"field": "body"},
        )
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(
        exc.status_code, status_code_name(exc.status_code), detail, None, exc.headers
    )


def internal_error(method: str, path: str, exc: BaseException) -> JSONResponse:
    """Log an unexpected exception (with its traceback) and answer a bare 500."""
    log.error("unhandled error in %s %s", method, path, exc_info=exc)
    return error_response(500, "internal_error", "internal error: the server logged the cause")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in the one JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # Any other exception is answered by the app's guard middleware (internal_error): a
    # handler for Exception would be run by Starlette's outermost middleware, which then
    # re-raises, so every failure would be logged twice.


__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "Details",
    "ErrorBody",
    "ErrorInfo",
    "error_body",
    "error_response",
    "install_error_handlers",
    "internal_error",
    "status_code_name",
]
