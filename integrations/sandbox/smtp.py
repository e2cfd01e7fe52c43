"""The sandbox's SMTP server (aiosmtpd), playing the ``smtp`` catalog entry.

It runs on the sandbox's event loop, accepts ``AUTH PLAIN``/``AUTH LOGIN`` with
``sandbox-user``/``sandbox-password`` (and unauthenticated mail too, like many relays),
and stores each message in the sandbox state of service ``smtp``, collection
``messages``, keyed by its ``Message-ID`` header. A resend with the same Message-ID is
*not* stored twice: the stored message's ``deliveries`` counter goes up instead, which
is how a test proves that a retried send was (or was not) a duplicate. A message without
a Message-ID gets a generated key (and is therefore never deduplicated).

Faults of service ``smtp`` apply: an outage answers ``421`` (at connect and to every
command), an injected error answers ``451`` to ``DATA``, ``reset`` drops the connection,
``hang`` stalls, and ``lost_after_commit`` (``lost_methods`` must include ``POST``, the
default) stores the message and then drops the connection before the ``250``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from integrations.auth import SANDBOX_PASSWORD, SANDBOX_USER
from integrations.sandbox.faults import FaultController
from integrations.sandbox.state import RequestLog, StateRegistry

SERVICE = "smtp"
COLLECTION = "messages"
UNAVAILABLE = "421 4.3.2 Service not available, closing transmission channel"
TEMPORARY_FAILURE = "451 4.3.0 Requested action aborted: local error in processing"

log = logging.getLogger("integrations.sandbox.smtp")


class _NoLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4 warns "Session.login_data is deprecated" on every successful AUTH,
    from its own code: nothing for us to fix, so keep it out of the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_quiet = _NoLoginDataWarning()


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """aiosmtpd authenticator: only the sandbox user/password pass (PLAIN and LOGIN)."""
    if isinstance(auth_data, LoginPassword) and (
        auth_data.login == SANDBOX_USER.encode() and auth_data.password == SANDBOX_PASSWORD.encode()
    ):
        return AuthResult(success=True, auth_data=SANDBOX_USER)
    return AuthResult(success=False, handled=False)


def _text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is not None:
        content = part.get_content()
        return content if isinstance(content, str) else repr(content)
    payload = message.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return ""


class SandboxSMTPHandler:
    """aiosmtpd hooks: faults, and storing each accepted message.

    Args:
        registry: The sandbox state (messages go to ``smtp``/``messages``).
        faults: The fault controller (service ``smtp``).
        request_log: The request log (routes ``SMTP CONNECT``/``EHLO``/``DATA``).
    """

    def __init__(
        self, registry: StateRegistry, faults: FaultController, request_log: RequestLog
    ) -> None:
        self.registry = registry
        self.faults = faults
        self.request_log = request_log

    def down(self) -> bool:
        """Whether the ``smtp`` service is in an outage now."""
        return self.faults.outage_mode(SERVICE) is not None

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        stats = self.request_log.start(SERVICE, "SMTP EHLO")
        if self.down():
            stats.fault("outage")
            stats.status("421")
            return [UNAVAILABLE]
        session.host_name = hostname
        stats.status("250")
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.down():
            return UNAVAILABLE
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.down():
            return UNAVAILABLE
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stats = self.request_log.start(SERVICE, "SMTP DATA")
        if self.down():
            stats.fault("outage")
            stats.status("421")
            return UNAVAILABLE
        latency, fault = self.faults.before(SERVICE)
        if fault is not None:
            stats.fault(fault.kind)
            if fault.action == "hang":
                await asyncio.sleep(fault.hang_seconds)
            elif fault.action == "reset":
                stats.status("reset")
                _abort(server)
                return TEMPORARY_FAILURE
            if fault.action != "malformed":  # no SMTP analogue of a garbled body
                stats.status("451")
                return TEMPORARY_FAILURE
        if latency:
            await asyncio.sleep(latency)
        key = self.store(session, envelope)
        lost = self.faults.after(SERVICE, "POST", 250)
        if lost is not None:
            stats.fault(lost.kind)
            stats.status("reset")
            _abort(server)
        else:
            stats.status("250")
        return f"250 2.0.0 OK: queued as {key}"

    def store(self, session: Session, envelope: Envelope) -> str:
        """Store (or count a re-delivery of) the message; return its key."""
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        state = self.registry.get(SERVICE)
        messages = state.collection(COLLECTION)
        message_id = (message.get("Message-ID") or "").strip()
        key = message_id or f"<sandbox-{state.next_id()}@junction.sandbox>"
        existing = messages.get(key)
        if existing is not None:
            existing["deliveries"] = int(existing.get("deliveries", 1)) + 1
            return key
        messages[key] = {
            "id": key,
            "message_id": message_id or None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "from": str(message.get("From", "")),
            "to": [a.strip() for a in str(message.get("To", "")).split(",") if a.strip()],
            "cc": [a.strip() for a in str(message.get("Cc", "")).split(",") if a.strip()],
            "subject": str(message.get("Subject", "")),
            "body": _text_body(message),
            "auth_user": session.auth_data if session.authenticated else None,
            "received_at": datetime.now(UTC).isoformat(),
            "deliveries": 1,
        }
        return key


def _abort(server: SMTP) -> None:
    transport = server.transport
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()


class SandboxSMTP(SMTP):
    """aiosmtpd's SMTP, answering ``421`` at connect while the ``smtp`` service is down."""

    async def _handle_client(self) -> None:
        handler = self.event_handler
        if isinstance(handler, SandboxSMTPHandler) and handler.down():
            stats = handler.request_log.start(SERVICE, "SMTP CONNECT")
            stats.fault("outage")
            stats.status("421")
            await self.push(UNAVAILABLE)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


async def start_smtp_server(
    registry: StateRegistry,
    faults: FaultController,
    request_log: RequestLog,
    host: str = "127.0.0.1",
    port: int = 0,
) -> asyncio.Server:
    """Start the SMTP server on the running loop (``port=0``: a free port).

    Returns:
        The ``asyncio.Server``; its port is ``server.sockets[0].getsockname()[1]``.
    """
    loop = asyncio.get_running_loop()
    logging.getLogger("mail.log").addFilter(_quiet)
    handler = SandboxSMTPHandler(registry, faults, request_log)

    def factory() -> SMTP:
        return SandboxSMTP(
            handler,
            hostname="sandbox.junction.local",  # getfqdn() may stall on a box without DNS
            ident="Junction sandbox ESMTP",
            authenticator=authenticate,
            auth_required=False,
            auth_require_tls=False,
            timeout=60,
            loop=loop,
        )

    return await loop.create_server(factory, host=host, port=port)
