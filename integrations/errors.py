"""Typed error hierarchy shared by every integration client.

Modelled on openai-python: callers catch by meaning (``AuthenticationError``,
``RateLimitError``, ``APITimeoutError``) instead of by HTTP library exception. Every
message names the service and action and has already been passed through the redactor,
so an error can be logged or shown as is.
"""

from __future__ import annotations

from typing import ClassVar, TypedDict, Unpack

from integrations.redaction import redact


class IntegrationError(Exception):
    """Base class of every error an integration client raises.

    Attributes:
        service: Catalog name of the integration (``okta``), or ``None``.
        action: Action name (``create_user``, ``health_check``), or ``None``.
        retryable: Whether retrying the same request may succeed.
        sent: Whether the request may have reached the service (``False`` for errors
            raised before sending: configuration, a refused URL, an open circuit).
    """

    retryable: bool = False
    sent: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        action: str | None = None,
    ) -> None:
        self.service = service
        self.action = action
        prefix = ""
        if service:
            prefix = f"{service}.{action}: " if action else f"{service}: "
        self.message = redact(prefix + message)
        super().__init__(self.message)

    @property
    def error_class(self) -> str:
        """The class name recorded in metrics (``RateLimitError``)."""
        return type(self).__name__


# --- configuration: raised before any network call -------------------------------------


class ConfigurationError(IntegrationError):
    """The integration is not usable as configured (nothing was sent)."""

    sent = False


class UnknownIntegrationError(ConfigurationError):
    """No catalog entry has this name."""


class UnknownActionError(ConfigurationError):
    """The integration has no action of this name."""


class UnknownCapabilityError(ConfigurationError):
    """No catalog entry has this capability tag, or provides this capability action."""


class MissingCredentialsError(ConfigurationError):
    """No credential was found in the argument, the environment or a Secret block."""


class InvalidBaseURLError(ConfigurationError):
    """The configured base URL is not an absolute http(s) URL."""


class UnsafeRequestError(IntegrationError):
    """Refused before sending: the request would leave the configured base URL (a
    pagination link or absolute URL on another origin, a path climbing out of the base
    path, a path parameter that is not one segment). Nothing was sent."""

    sent = False


class CrossOriginError(UnsafeRequestError):
    """The request's origin (scheme, host, port) is not the configured base URL's."""


class CircuitOpenError(IntegrationError):
    """The service's circuit breaker is open: the call was not attempted."""

    sent = False

    def __init__(self, message: str, *, service: str, action: str | None, retry_in: float) -> None:
        super().__init__(message, service=service, action=action)
        self.retry_in = retry_in


# --- transport ---------------------------------------------------------------------------


class APIConnectionError(IntegrationError):
    """The request could not be sent or no response arrived (refused, reset, DNS)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        action: str | None = None,
        request_sent: bool = True,
    ) -> None:
        super().__init__(message, service=service, action=action)
        # False only when the connection was never established: then even a
        # non-idempotent request is safe to retry, the server never saw it.
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """The service did not answer within the timeout."""


# --- responses ---------------------------------------------------------------------------


class APIStatusError(IntegrationError):
    """The service answered with a non-success HTTP status.

    Attributes:
        status_code: The HTTP status.
        body_excerpt: The first characters of the (redacted) body, for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        service: str | None = None,
        action: str | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(message, service=service, action=action)
        self.status_code = status_code
        self.body_excerpt = redact(body_excerpt)


class BadRequestError(APIStatusError):
    """400: the service rejected the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the credential is missing, wrong or expired."""


class PermissionDeniedError(APIStatusError):
    """403: the credential lacks the permission for this action."""


class NotFoundError(APIStatusError):
    """404: the resource does not exist."""


class ConflictError(APIStatusError):
    """409: the resource already exists or changed concurrently."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but semantically invalid."""


class RequestTimeoutError(APIStatusError):
    """408: the server timed out waiting for the request."""

    retryable = True


class _StatusFields(TypedDict, total=False):
    """The optional keyword arguments of :class:`APIStatusError`."""

    service: str | None
    action: str | None
    body_excerpt: str


class RetryLaterError(APIStatusError):
    """429 or 5xx: the service may take the same request later.

    Attributes:
        retry_after: The server's ``Retry-After`` hint in seconds, when it sent one.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: float | None = None,
        **fields: Unpack[_StatusFields],
    ) -> None:
        super().__init__(message, status_code=status_code, **fields)
        self.retry_after = retry_after


class RateLimitError(RetryLaterError):
    """429: too many requests. ``retry_after`` holds the server's hint in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        retry_after: float | None = None,
        **fields: Unpack[_StatusFields],
    ) -> None:
        super().__init__(message, status_code=status_code, retry_after=retry_after, **fields)


class ServerError(RetryLaterError):
    """5xx: the service failed. ``retry_after`` is set when a 503 carried one."""


class MalformedResponseError(IntegrationError):
    """The service answered 2xx but the body is not what its API documents
    (HTML instead of JSON, invalid JSON, missing fields)."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    422: UnprocessableEntityError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """Map an HTTP status to the error class raised for it.

    Args:
        status_code: A non-2xx HTTP status.

    Returns:
        The most specific ``APIStatusError`` subclass.
    """
    if status_code == 429:
        return RateLimitError
    if status_code >= 500:
        return ServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)


def unsent_error_classes() -> frozenset[str]:
    """Names (as metrics record them) of the errors raised before anything was sent."""
    found: set[str] = set()
    todo: list[type[IntegrationError]] = [IntegrationError]
    while todo:
        cls = todo.pop()
        if not cls.sent:
            found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(found)
