"""Request batching: many small calls that a vendor can answer in one bulk request.

Where the onboarding's vendors really have a bulk form (checked against their API docs):

* Okta ``POST /api/v1/users`` takes ``groupIds``: the user is created *and* put in every
  group in one request. :class:`~integrations.okta.CreateUserParams` exposes it as
  ``group_ids``, so a spec gets the batch by passing the groups to ``okta.create_user``
  instead of one ``okta.add_user_to_group`` step per group (one request instead of
  1 + N). Okta has no bulk form of ``PUT /groups/{id}/users/{id}`` itself.
* Okta user lookups: ``GET /api/v1/users?search=profile.login eq "a" or profile.login eq
  "b"`` answers many logins in one request. :data:`BATCHABLE` registers it for
  ``okta.get_user``; the runner sends concurrent ``okta.get_user`` calls (concurrent
  steps, ``for_each`` items or concurrent runs) through a :class:`MicroBatcher`.
* Jira ``POST /rest/api/3/issue/bulk`` (up to 50 issues) and GitLab's comma-separated
  ``user_id`` on ``POST /projects/:id/members`` exist but have no idempotency story that
  survives a lost response per item, so they are not used: a retry could not tell which
  items committed.
* Workday's REST ``GET /workers`` has no multi-id filter; Webex and Slack have no bulk
  message send.

:class:`MicroBatcher` is the generic part: callers ``await batcher.submit(key)``; keys
arriving within ``window`` seconds (or until ``max_size``) go to one ``bulk(keys)`` call,
each caller gets its own key's answer (or its own ``KeyError`` when the bulk answer
lacks it). A failing bulk call fails every caller of that batch with the same error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from integrations.okta import OktaUser

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MicroBatcher(Generic[K, V]):
    """Collect keys for a short window and resolve them with one bulk call.

    Args:
        bulk: ``async bulk(keys) -> {key: value}`` for distinct keys.
        window: Seconds to wait for more keys after the first one of a batch.
        max_size: A batch is sent at once when it reaches this many keys.
    """

    def __init__(
        self,
        bulk: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]],
        *,
        window: float = 0.005,
        max_size: int = 20,
    ) -> None:
        self._bulk = bulk
        self._window = window
        self._max = max_size
        self._pending: dict[K, list[asyncio.Future[V]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0
        self.keys_sent = 0

    async def submit(self, key: K) -> V:
        """The value of ``key``, from the next bulk call.

        Raises:
            KeyError: The bulk answer did not contain ``key``.
            Exception: Whatever the bulk call raised.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._pending.setdefault(key, []).append(future)
        if len(self._pending) >= self._max:
            self._fire()
        elif self._timer is None:
            self._timer = loop.call_later(self._window, self._fire)
        return await future

    def _fire(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, {}
        if batch:
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        self.batches += 1
        self.keys_sent += len(batch)
        try:
            found = await self._bulk(list(batch))
        except BaseException as exc:
            for futures in batch.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, futures in batch.items():
            for f in futures:
                if f.done():
                    continue
                if key in found:
                    f.set_result(found[key])
                else:
                    f.set_exception(KeyError(key))


@dataclass(frozen=True)
class BatchRule:
    """How one action is batched.

    Attributes:
        key_field: The input field whose values are batched (the others must be default).
        bulk: ``async bulk(client, keys) -> {key: output}``.
    """

    key_field: str
    bulk: Callable[[Any, Sequence[str]], Awaitable[Mapping[str, Any]]]


async def okta_users_by_login(client: Any, logins: Sequence[str]) -> dict[str, Any]:
    """Okta users for many logins in one ``search`` request (``or`` of ``eq`` filters).

    Args:
        client: An :class:`~integrations.okta.OktaClient`.
        logins: Distinct logins.

    Returns:
        ``{login: OktaUser}`` for those found (a missing login raises ``KeyError`` in
        its caller, which the runner turns into the same ``NotFoundError`` as the
        single lookup).
    """
    expression = " or ".join(
        'profile.login eq "{}"'.format(login.replace('"', '\\"')) for login in logins
    )
    pages, _ = await client.link_pages(
        "/api/v1/users",
        action="get_user",
        model=list[OktaUser],
        params={"search": expression, "limit": 200},
        max_pages=10,
    )
    wanted = {login.lower(): login for login in logins}
    found: dict[str, Any] = {}
    for page in pages:
        for user in page:
            login = str(getattr(user.profile, "login", "") or "").lower()
            if login in wanted:
                found[wanted[login]] = user
    return found


BATCHABLE: dict[tuple[str, str], BatchRule] = {
    ("okta", "get_user"): BatchRule(key_field="login", bulk=okta_users_by_login),
}
"""``(integration, action)`` -> how concurrent calls of it are merged."""
