"""What one HTTP answer becomes: the decoded body with its headers, the vendor's error
message, the cached pydantic adapters that validate bodies.

Shared by the engine (:mod:`integrations.base`) and the vendor modules that read headers
(pagination) or error bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Literal, TypedDict, TypeVar

import httpx
from pydantic import TypeAdapter

T = TypeVar("T")

Expect = Literal["json", "text", "none"]


@dataclass(frozen=True)
class APIResponse(Generic[T]):
    """One answer with what the body alone does not carry (``with_response=True``).

    Returned per call, so concurrent calls on one client never see each other's
    headers (unlike ``last_status``, which is the client's latest).

    Attributes:
        data: The decoded body, as ``expect`` and ``model`` would return it alone.
        headers: The response headers (pagination: ``Link``, ``X-Next-Page``, ``X-Total``).
        status: The HTTP status.
        url: The URL that answered (relative ``Link`` headers resolve against it).
    """

    data: T
    headers: httpx.Headers
    status: int
    url: str = ""


class RequestOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`IntegrationClient.request` its overloads share."""

    params: Mapping[str, Any] | None
    json: Any
    data: Mapping[str, Any] | None
    content: bytes | str | None
    headers: Mapping[str, str] | None
    idempotent: bool | None
    idempotency_key: str | None
    timeout: float | None
    expect: Expect
    max_attempts: int | None


@lru_cache(maxsize=512)
def typed_adapter(model: Any) -> TypeAdapter[Any]:
    """The TypeAdapter of ``model``, cached: building one per response cost ~0.16 ms on
    the call path."""
    return TypeAdapter(model)


def vendor_message(body: Any) -> str | None:
    """Pull the human message out of the common vendor error shapes.

    Args:
        body: A parsed error body (a dict, or a bare JSON string).

    Returns:
        The message, or ``None`` when the body has none of the known shapes.
    """
    if isinstance(body, str):  # a bare JSON string (Alertmanager's 400s)
        return body.strip() or None
    if isinstance(body, dict):
        for key in ("errorSummary", "message", "error_description", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and value:  # GitLab: {"message": {"base": ["..."]}}
                return "; ".join(f"{k}: {v}" for k, v in list(value.items())[:3])
        err = body.get("error")
        if isinstance(err, dict):
            inner = vendor_message(err)
            if inner:
                return inner
        if isinstance(err, str) and err:
            return err
        errors = body.get("errors") or body.get("errorMessages")
        if isinstance(errors, list) and errors:
            first = errors[0]
            return first if isinstance(first, str) else vendor_message(first)
        if isinstance(errors, dict) and errors:
            return "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:3])
    return None
