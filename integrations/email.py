"""Email over SMTP (RFC 5321 submission, RFC 5322 messages), with aiosmtplib.

Follows RFC 5321 (https://datatracker.ietf.org/doc/html/rfc5321: EHLO, MAIL, RCPT, DATA,
NOOP, QUIT and its reply codes: 2xx done, 4xx transient, 5xx permanent), RFC 3207
(STARTTLS), RFC 8314 (implicit TLS, ``smtps://``), RFC 4954 (AUTH) and RFC 5322 (message
format, ``Message-ID``).

SMTP is not HTTP, but :class:`SmtpClient` still subclasses :class:`IntegrationClient` so
it shares the service's circuit breaker, the metric hook (one :class:`CallMetric` per
call, through ``IntegrationClient._report``), the health check, redaction and the typed
errors:

* authentication refused (530/534/535) -> :class:`AuthenticationError`
* a 4xx reply (including a 421 greeting) -> :class:`ServerError` (retryable)
* another 5xx reply -> :class:`BadRequestError` (permanent)
* connection refused -> :class:`APIConnectionError`; timeouts -> :class:`APITimeoutError`

Base URL ``smtp://host:port`` (STARTTLS when the server offers it, except against the
Junction sandbox) or ``smtps://host:port`` (implicit TLS). Credentials (basic scheme:
``JUNCTION_SMTP_USERNAME``/``_PASSWORD``) are optional; when set, the client logs in if
the server offers AUTH, and refuses to send unauthenticated to a non-sandbox server
that does not.

Metrics carry ``status=None``: SMTP reply codes are not HTTP statuses; the typed
errors' ``status_code`` holds the SMTP reply code instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiosmtplib
from pydantic import BaseModel, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    IntegrationError,
    ServerError,
)

T = TypeVar("T")

_EMAIL = r"^[^@\s<>]+@[^@\s<>]+$"
_AUTH_CODES = frozenset({530, 534, 535, 538})


def message_id(idempotency_key: str, sender: str) -> str:
    """The deterministic ``Message-ID`` for an idempotency key.

    The same key always gives the same id, so a resent message is recognisable (by the
    receiver, by a mailbox, by the sandbox).

    Args:
        idempotency_key: The caller's key.
        sender: The From address (its domain becomes the id's right-hand side).

    Returns:
        ``<junction.<hash>@<domain>>``.
    """
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2] or "junction.local"
    return f"<junction.{digest}@{domain}>"


# --- inputs / outputs ---------------------------------------------------------------------


class SendEmailParams(BaseModel):
    """Input of :meth:`SmtpClient.send_email`.

    Attributes:
        sender: The From address.
        to: Recipients (at least one).
        cc: Carbon-copy recipients (in the header and the envelope).
        bcc: Blind-copy recipients (envelope only).
        subject: Subject line.
        text: Plain-text body.
        html: HTML body (sent as ``multipart/alternative`` with ``text`` when both).
        reply_to: Reply-To address.
        idempotency_key: Determines the ``Message-ID``; default: derived from the
            message itself, so resending the same message gives the same id.
    """

    sender: str = Field(pattern=_EMAIL)
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str = Field(min_length=1)
    text: str | None = None
    html: str | None = None
    reply_to: str | None = Field(None, pattern=_EMAIL)
    idempotency_key: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> SendEmailParams:
        if self.text is None and self.html is None:
            raise ValueError("give text, html or both")
        for addr in (*self.to, *self.cc, *self.bcc):
            if not re.match(_EMAIL, addr):
                raise ValueError(f"not an email address: {addr!r}")
        return self

    @property
    def recipients(self) -> list[str]:
        """Every envelope recipient, without duplicates, in order."""
        return list(dict.fromkeys([*self.to, *self.cc, *self.bcc]))

    def key(self) -> str:
        """The idempotency key: the caller's, else a hash of the message."""
        if self.idempotency_key:
            return self.idempotency_key
        basis = "\x1f".join(
            [self.sender, ",".join(self.recipients), self.subject, self.text or "", self.html or ""]
        )
        return hashlib.sha256(basis.encode()).hexdigest()

    def message(self) -> EmailMessage:
        """The RFC 5322 message."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        if self.cc:
            msg["Cc"] = ", ".join(self.cc)
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Subject"] = self.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id(self.key(), self.sender)
        if self.text is not None:
            msg.set_content(self.text)
            if self.html is not None:
                msg.add_alternative(self.html, subtype="html")
        else:
            msg.set_content(self.html or "", subtype="html")
        return msg


class EmailSent(BaseModel):
    """Outcome of :meth:`SmtpClient.send_email`.

    Attributes:
        message_id: The ``Message-ID`` header sent.
        accepted: Recipients the server accepted.
        refused: Recipients refused, with the server's reply.
        response: The server's final reply to DATA (``250 ...``).
    """

    message_id: str
    accepted: list[str]
    refused: dict[str, str] = Field(default_factory=dict)
    response: str = ""


# --- client -------------------------------------------------------------------------------


class _Stage:
    """How far one SMTP attempt got (decides whether a retry may duplicate the mail)."""

    def __init__(self) -> None:
        self.data_started = False


class SmtpClient(IntegrationClient):
    """Typed SMTP client (``get_client("smtp")``)."""

    service = "smtp"

    # -- connection settings

    @property
    def _endpoint(self) -> tuple[str, int, bool]:
        parts = urlsplit(self.base_url)
        implicit_tls = parts.scheme == "smtps"
        port = parts.port or (465 if implicit_tls else 587)
        return parts.hostname or "localhost", port, implicit_tls

    def _smtp(self) -> aiosmtplib.SMTP:
        host, port, implicit_tls = self._endpoint
        return aiosmtplib.SMTP(
            hostname=host,
            port=port,
            use_tls=implicit_tls,
            # STARTTLS when offered (None), never against the plain-text sandbox.
            start_tls=False if (self.sandbox or implicit_tls) else None,
            timeout=self.timeout.read,
            local_hostname="junction.local",
        )

    async def _open(self, smtp: aiosmtplib.SMTP) -> None:
        await asyncio.wait_for(smtp.connect(), timeout=self._connect_budget)
        await smtp.ehlo()
        creds = self.credentials
        if creds.username is None or creds.password is None:
            return
        if not smtp.supports_extension("auth"):
            if self.sandbox:
                return  # the sandbox's relay takes mail without AUTH
            raise ConfigurationError(
                "credentials are set but the SMTP server offers no AUTH (use smtps:// or a "
                "port with STARTTLS)",
                service=self.name,
            )
        await smtp.login(creds.username, creds.password.get_secret_value())

    @property
    def _where(self) -> str:
        """``host:port``, the ``path`` of this client's metrics."""
        host, port, _ = self._endpoint
        return f"{host}:{port}"

    @property
    def _connect_budget(self) -> float:
        # connect() covers TCP, TLS, the greeting and STARTTLS: give it connect + read.
        return float((self.timeout.connect or 5.0) + (self.timeout.read or 10.0))

    # -- error mapping

    def _typed(self, exc: Exception, action: str, stage: _Stage) -> IntegrationError:
        host, port, _ = self._endpoint
        where = f"smtp {host}:{port}"
        kw: dict[str, Any] = {"service": self.name, "action": action}
        if isinstance(exc, IntegrationError):
            return exc
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if codes and all(400 <= c < 500 for c in codes):
                return ServerError(
                    f"every recipient deferred by {where}: {detail}", status_code=codes[0], **kw
                )
            return BadRequestError(
                f"every recipient refused by {where}: {detail}",
                status_code=codes[0] if codes else 550,
                **kw,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            code, text = exc.code, exc.message
            if code in _AUTH_CODES or isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                return AuthenticationError(
                    f"{where} refused the login: {code} {text} (check JUNCTION_SMTP_USERNAME "
                    "and JUNCTION_SMTP_PASSWORD)",
                    status_code=code,
                    **kw,
                )
            if 400 <= code < 500:
                return ServerError(f"{where} deferred: {code} {text}", status_code=code, **kw)
            return BadRequestError(f"{where} refused: {code} {text}", status_code=code, **kw)
        if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
            return APITimeoutError(f"connect timeout to {where}", request_sent=False, **kw)
        if isinstance(exc, aiosmtplib.SMTPConnectError):
            return APIConnectionError(f"cannot connect to {where}: {exc}", request_sent=False, **kw)
        if isinstance(exc, TimeoutError):  # SMTPTimeoutError and asyncio's both
            return APITimeoutError(
                f"{where} did not answer within the timeout",
                request_sent=stage.data_started,
                **kw,
            )
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | OSError):
            return APIConnectionError(
                f"connection to {where} lost: {exc}", request_sent=stage.data_started, **kw
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            return APIConnectionError(
                f"SMTP error with {where}: {exc}", request_sent=stage.data_started, **kw
            )
        return APIConnectionError(f"{type(exc).__name__} with {where}: {exc}", **kw)

    def _verdict(self, err: IntegrationError) -> None:
        """Tell the breaker what an error says about the server's health."""
        if isinstance(err, APIConnectionError | ServerError):
            self.breaker.record_failure()
        elif isinstance(err, ConfigurationError):
            self.breaker.release()
        else:
            self.breaker.record_success()  # it answered, sensibly, with a refusal

    # -- the call path

    async def _call(
        self,
        action: str,
        method: str,
        run: Callable[[aiosmtplib.SMTP, _Stage], Awaitable[T]],
        *,
        max_attempts: int,
    ) -> T:
        """Run ``run(smtp, stage)`` with breaker, retries and one metric, like ``request``."""
        started = time.perf_counter()
        attempts = 0
        policy = self.retry
        while True:
            attempts += 1
            stage = _Stage()
            try:
                self._admit(action)
                smtp = self._smtp()
                try:
                    result = await run(smtp, stage)
                finally:
                    await self._close(smtp)
            except Exception as raw:  # cancellation (a BaseException) passes through
                err = self._typed(raw, action, stage)
                if not isinstance(raw, IntegrationError):
                    self._verdict(err)
                elif isinstance(raw, ConfigurationError):
                    self.breaker.release()
                # A retry may duplicate the mail only once DATA was under way and the
                # server then went silent; a 4xx reply means it took nothing.
                if (
                    attempts < max_attempts
                    and policy.should_retry(err, idempotent=True)
                    and not (isinstance(err, APIConnectionError) and err.request_sent)
                ):
                    await asyncio.sleep(policy.wait_seconds(err, attempts))
                    continue
                self.last_attempts = attempts
                self._report(action, method, self._where, None, False, started, attempts, err)
                raise err from None
            self.breaker.record_success()
            self.last_attempts = attempts
            self._report(action, method, self._where, None, True, started, attempts, None)
            return result

    @staticmethod
    async def _close(smtp: aiosmtplib.SMTP) -> None:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()

    # -- health and actions

    async def _health_request(self, max_attempts: int) -> None:
        """Connect, EHLO, log in when credentials are set, NOOP, QUIT."""

        async def run(smtp: aiosmtplib.SMTP, stage: _Stage) -> None:
            await self._open(smtp)
            await smtp.noop()

        await self._call("health_check", "EHLO", run, max_attempts=max_attempts)

    @action(read_only=False, idempotent=False, key_field="idempotency_key")
    async def send_email(self, params: SendEmailParams) -> EmailSent:
        """Send one message to its recipients.

        Retried (with the same ``Message-ID``) only when the server cannot have taken
        the message: a refused connection, or a 4xx reply at any step (RFC 5321: the
        server accepted nothing). A timeout or a dropped connection after DATA began is
        not retried, as the mail may have been delivered; the deterministic
        ``Message-ID`` lets a receiver recognise a resend. Not marked idempotent: SMTP
        servers do not drop a message whose ``Message-ID`` they have seen.

        Args:
            params: Sender, recipients, subject, bodies, idempotency key.

        Returns:
            The ``Message-ID`` and the accepted/refused recipients.

        Raises:
            AuthenticationError: The server refused the login.
            ServerError: The server deferred the message (4xx).
            BadRequestError: The server refused the sender, every recipient or the data.
        """
        msg = params.message()
        mid = str(msg["Message-ID"])
        recipients = params.recipients
        raw = msg.as_bytes()

        async def run(smtp: aiosmtplib.SMTP, stage: _Stage) -> EmailSent:
            await self._open(smtp)
            await smtp.mail(params.sender)
            accepted: list[str] = []
            refused: dict[str, str] = {}
            errors: list[aiosmtplib.SMTPRecipientRefused] = []
            for rcpt in recipients:
                try:
                    await smtp.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    errors.append(exc)
                    refused[rcpt] = f"{exc.code} {exc.message}"
                else:
                    accepted.append(rcpt)
            if not accepted:
                raise aiosmtplib.SMTPRecipientsRefused(errors)
            stage.data_started = True
            reply = await smtp.data(raw)
            return EmailSent(
                message_id=mid,
                accepted=accepted,
                refused=refused,
                response=f"{reply.code} {reply.message}",
            )

        return await self._call("send_email", "MAIL", run, max_attempts=self.retry.max_attempts)
