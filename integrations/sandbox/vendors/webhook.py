"""Sandbox webhook receiver: records deliveries, dedupes them by ``Idempotency-Key``.

Plays a well-behaved receiver of Junction's generic webhook: ``GET /health`` answers a
plain-text ``ok``; a ``POST`` to any path is recorded. The first delivery of an
``Idempotency-Key`` goes to collection ``deliveries`` (keyed by it, with the raw body, the
path and the ``X-Junction-Signature`` header, so a test can verify the HMAC with its
secret); every repeat of the key goes to ``duplicates`` and bumps the first one's
``attempts``, so tests can see a retried delivery. A delivery without the header is stored
under a generated key. Answers ``200 {"received": true, "duplicate": <bool>}``; a body
that is not JSON is 400.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from starlette.responses import PlainTextResponse, Response

from integrations.sandbox.api import SandboxRequest, VendorRoutes, json_response, vendor_error

routes = VendorRoutes("webhook")


@routes.route("GET", "/health")
async def health(req: SandboxRequest) -> Response:
    """Plain-text health answer (not JSON, as many receivers do)."""
    return PlainTextResponse("ok")


async def _receive(req: SandboxRequest) -> Response:
    state = req.state
    try:
        json.loads(req.body or b"null")
    except ValueError:
        raise vendor_error("webhook", 400, "body is not JSON") from None
    headers = req.headers
    key = headers.get("idempotency-key")
    deliveries = state.collection("deliveries")
    duplicates = state.collection("duplicates")
    now = datetime.now(UTC).isoformat()
    record = {
        "idempotency_key": key,
        "path": req.request.url.path,
        "body": req.body.decode("utf-8", "replace"),
        "content_type": headers.get("content-type"),
        "signature": headers.get("x-junction-signature"),
        "received_at": now,
    }
    if key is not None and key in deliveries:
        first = deliveries[key]
        first["attempts"] = int(first.get("attempts", 1)) + 1
        duplicates[f"{key}#{first['attempts']}"] = record
        return json_response({"received": True, "duplicate": True})
    stored_key = key if key is not None else f"no-key-{state.next_id()}"
    deliveries[stored_key] = {**record, "attempts": 1}
    return json_response({"received": True, "duplicate": False})


@routes.route("POST", "/")
async def receive_root(req: SandboxRequest) -> Response:
    """A delivery to the receiver's root."""
    return await _receive(req)


@routes.route("POST", "/{path:path}")
async def receive_path(req: SandboxRequest) -> Response:
    """A delivery to any other path."""
    return await _receive(req)
