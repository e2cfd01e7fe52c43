"""Idempotency of side-effecting actions: keys derived from the request, and
check-before-create for vendors without an idempotency key.

A retry after a lost answer, or a rerun of a workflow after a crash, makes the same
request again. Where a vendor takes an idempotency key, a correlation id or a searchable
marker, the key is the caller's or :func:`derived_key` of the request (never random), and
:func:`create_once` looks for the object before creating it and after an ambiguous failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel

from integrations.errors import IntegrationError
from integrations.retry import RetryPolicy

T = TypeVar("T")


def derived_key(given: str | None, *parts: object) -> str:
    """An idempotency key: the caller's, else one derived from what the caller gave.

    Never random: the same request made again (a retry, a rerun after a crash, the same
    call from another process) carries the same key, so the vendor's deduplication or a
    check-before-create recognises it.

    Args:
        given: The caller's key, used as is when set.
        *parts: What identifies the object (project, title, payload...): strings,
            numbers, ``None``, lists, dicts and pydantic models.

    Returns:
        ``given``, or 32 hex digits of a SHA-256 over ``parts``.
    """
    if given:
        return given
    raw = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


CALLER_KEY_LOOK_BACK = timedelta(hours=24)
"""How far back a lookup searches a time-ordered history for a caller's key."""

CLOCK_SKEW = timedelta(minutes=1)
"""Added to every look-back: the vendor's clock may be behind ours."""


@dataclass(frozen=True)
class KeyScope:
    """The key a create carries, and which earlier objects a lookup may take for it.

    Attributes:
        key: The idempotency key (the caller's, derived, or random; see
            :func:`key_scope`).
        since: Only objects created at or after this instant count.
        lookup_first: Whether to look before the first attempt (``False`` for a random
            key: nothing can carry it yet).
    """

    key: str
    since: datetime
    lookup_first: bool


def key_scope(
    given: str | None,
    window_seconds: int,
    *parts: object,
    caller_look_back: timedelta | None = CALLER_KEY_LOOK_BACK,
) -> KeyScope:
    """The key and look-back of a create found again in a time-ordered history (messages,
    comments) where no vendor key exists and the whole history cannot be searched.

    - A caller's key (a workflow step's) is searched for over ``caller_look_back``
      (``None``: at any age, where the history is bounded, such as one issue's comments).
    - Without one, the key is derived from ``parts`` and searched for over
      ``window_seconds``: the same content repeated later is a new message.
    - With ``window_seconds`` 0 the key is random: every call creates, and only its own
      re-attempts (after an ambiguous failure) look for it.

    Args:
        given: The caller's key, if any.
        window_seconds: Look-back for a derived key (0: always create).
        *parts: What identifies the object, for :func:`derived_key`.
        caller_look_back: Look-back for a caller's key (``None``: unbounded).

    Returns:
        The key, the earliest creation time that counts, and whether to look first.
    """
    now = datetime.now(UTC) - CLOCK_SKEW
    if given:
        since = (
            datetime.min.replace(tzinfo=UTC) if caller_look_back is None else now - caller_look_back
        )
        return KeyScope(given, since, True)
    if window_seconds:
        return KeyScope(derived_key(None, *parts), now - timedelta(seconds=window_seconds), True)
    return KeyScope(uuid.uuid4().hex, now, False)


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)  # datetimes, dates, enums: their canonical text


async def create_once(
    policy: RetryPolicy,
    *,
    lookup: Callable[[], Awaitable[T | None]],
    create: Callable[[], Awaitable[T]],
    lookup_first: bool,
) -> T:
    """Create an object once, for vendors without an idempotency key (check-before-create).

    A create whose answer is lost (5xx, timeout, connection reset, garbled body) may
    have committed, so it is never repeated blind:

    1. With ``lookup_first``, ``lookup()`` runs before the first attempt and an object
       it finds is returned (an earlier attempt or run made the same request).
    2. ``create()`` makes one attempt. Send it non-idempotent (the engine then retries
       only what never reached the vendor: a refused connection, a 429) or with
       ``max_attempts=1``.
    3. When the attempt fails in a way ``policy`` retries, the policy's wait passes (it
       also gives an eventually consistent search time to see the write), then
       ``lookup()`` runs again: a found object is returned; only when the lookup proves
       nothing was created is ``create()`` attempted again.
    4. A lookup that fails ends the call with its error (chained to the create's):
       better no object than a duplicate.

    ``create()`` runs at most ``policy.max_attempts`` times; an error the policy does
    not retry (4xx, circuit open, a ``Retry-After`` beyond the cap) and the last
    attempt's error are raised as they are.

    Args:
        policy: When a failed create may be re-attempted, and the wait before.
        lookup: Finds the object an earlier attempt (or run) created, else ``None``.
            Reads only. It marks what it returns (the vendors' ``unchanged`` or
            ``existing`` field), which is how callers tell found from created.
        create: One create attempt.
        lookup_first: Look up before the first attempt too (a rerun finds the first
            run's object). ``False`` only when the key is new to this call (nothing can
            carry it yet), which saves a request.

    Returns:
        The created object, or the one ``lookup()`` found.
    """
    if lookup_first:
        found = await lookup()
        if found is not None:
            return found
    attempt = 1
    while True:
        try:
            return await create()
        except IntegrationError as exc:
            if attempt >= policy.max_attempts or not policy.should_retry(exc, idempotent=True):
                raise
            failure = exc
        await asyncio.sleep(policy.wait_seconds(failure, attempt))
        attempt += 1
        try:
            found = await lookup()
        except IntegrationError as exc:
            raise exc from failure
        if found is not None:
            return found
