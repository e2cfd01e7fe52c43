"""Redaction of secrets from log lines, error messages and stored text.

Two nets: every secret value Junction loads is registered here (so it is replaced
wherever it appears, whatever the vendor's format), and patterns catch credentials we
never loaded ourselves (an ``Authorization`` header echoed by a vendor, a ``token=``
query parameter, OpenAI-style ``sk-`` keys).

A registered secret is also registered in the encodings it can take on its way out and
back (:func:`encoded_forms`: URL-encoded, JSON-escaped, base64), so a vendor echoing a
query parameter, a JSON body or a header value still gets redacted. The forms a whole
credential takes on the wire (``Basic <base64 of user:password>``, ``SSWS <token>``)
are registered by :mod:`integrations.auth`.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from functools import lru_cache
from urllib.parse import quote, quote_plus

REDACTED = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None

# Credentials in shapes we may not have loaded ourselves.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer xyz / SSWS xyz / Basic xyz / Token token=xyz / GenieKey xyz
    (
        re.compile(
            r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)"
            r"((?:bearer|basic|ssws|token|geniekey|bot|oauth)\s+)?(?:token=)?[^\s\"',;]+"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer|ssws|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (
        re.compile(
            r"(?i)([?&;\s\"']|^)((?:access_|refresh_|id_)?token|api_?key|apikey|client_secret|"
            r"password|secret|key|routing_key|sig|signature)(\"?\s*[=:]\s*\"?)([^&\s\"',;}]+)"
        ),
        r"\1\2\3" + REDACTED,
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-" + REDACTED),
    (re.compile(r"\b(xox[abprs]-)[A-Za-z0-9-]{6,}"), r"\1" + REDACTED),
    (re.compile(r"\b(gh[pousr]_)[A-Za-z0-9]{8,}"), r"\1" + REDACTED),
    (re.compile(r"\b(glpat-)[A-Za-z0-9_-]{8,}"), r"\1" + REDACTED),
    # user:password@ in URLs
    (re.compile(r"(?i)(https?://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
]

# Short values (a "1" password) would shred every log line; they are still covered by
# the patterns above when they appear as key=value.
_MIN_SECRET_LEN = 4


def encoded_forms(value: str) -> set[str]:
    """``value`` and the encodings it takes in URLs, JSON and headers.

    Args:
        value: A secret.

    Returns:
        The value itself, its percent-encodings (``quote`` and ``quote_plus``), its JSON
        string escaping, and its standard and URL-safe base64 (padded and not).
    """
    b64 = base64.b64encode(value.encode()).decode()
    urlsafe = base64.urlsafe_b64encode(value.encode()).decode()
    return {
        value,
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        b64,
        b64.rstrip("="),
        urlsafe,
        urlsafe.rstrip("="),
    }


def register_secret(value: str | None) -> None:
    """Register a secret value (and its :func:`encoded_forms`) to be replaced everywhere.

    Args:
        value: The plain secret. ``None`` and very short values are ignored.
    """
    global _secret_re
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.update(f for f in encoded_forms(value) if len(f) >= _MIN_SECRET_LEN)
        # Longest first so a secret containing another is replaced whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every known secret and credential-shaped token replaced.

    Args:
        text: Any text: a log line, an error message, a response excerpt.

    Returns:
        The text with secrets replaced by ``***``.
    """
    return _redact_with(text, _secret_re)


def redact_path(path: str) -> str:
    """:func:`redact` for a request path, remembered per path and set of secrets.

    A client sends the same few paths again and again (a monitor's health checks): the
    nine substitutions per call were a measurable share of a probe's CPU.
    """
    return _redact_path(path, _secret_re)


@lru_cache(maxsize=4096)
def _redact_path(path: str, secrets: re.Pattern[str] | None) -> str:
    # Keyed on the secrets' pattern too: registering a secret makes a new one.
    return _redact_with(path, secrets)


def _redact_with(text: str, secrets: re.Pattern[str] | None) -> str:
    if not text:
        return text
    if secrets is not None:
        text = secrets.sub(REDACTED, text)
    for regex, repl in _PATTERNS:
        text = regex.sub(repl, text)
    return text


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of the process at creation time.

    Idempotent. Wrapping the record factory (rather than adding filters) covers every
    logger and handler, including ones Prefect and httpx configure later; ``httpx``
    logs full request URLs, which can carry a token in the query string.
    """
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return record

    logging.setLogRecordFactory(factory)
