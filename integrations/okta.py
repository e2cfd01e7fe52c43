"""Okta: create, look up and deactivate users; list groups and add members.

Follows the Okta Management API reference,
https://developer.okta.com/docs/api/openapi/okta-management/management/tag/User/ and
.../tag/Group/ (spec: okta/okta-management-openapi-spec). Auth is ``Authorization: SSWS
<token>``; collections page with ``Link: <...>; rel="next"`` headers; errors carry
``errorCode``/``errorSummary``/``errorCauses``.

Retry safety: ``create_user`` never creates a duplicate. It looks the login up first,
and Okta itself refuses a second user with the same login (400 ``E0000001``, cause
"login: An object with this field already exists"), which the client turns into "fetch
and return the existing user". So a retry after a lost response is harmless and the
POST is sent as idempotent. Group membership is a PUT; deactivation checks the status
first and treats "already ``DEPROVISIONED``" as success.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import APIStatusError, BadRequestError, NotFoundError

# --- models -------------------------------------------------------------------------------


class OktaUserProfile(BaseModel):
    """The user's profile (custom attributes are kept as extras)."""

    model_config = ConfigDict(extra="allow")

    login: str
    email: str | None = None
    firstName: str | None = None  # Okta's camelCase names, kept as-is
    lastName: str | None = None


class OktaUser(BaseModel):
    """An Okta user.

    Attributes:
        status: ``STAGED``, ``PROVISIONED``, ``ACTIVE``, ``SUSPENDED``, ``DEPROVISIONED``...
        transitioningToStatus: The status an asynchronous lifecycle change is heading to.
        unchanged: Set by Junction (not a vendor field): the action found the user
            already in the wanted state (existing, or already deactivated) and created
            or changed nothing.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    created: datetime | None = None
    activated: datetime | None = None
    statusChanged: datetime | None = None
    lastUpdated: datetime | None = None
    transitioningToStatus: str | None = None
    profile: OktaUserProfile
    unchanged: bool = False


class OktaGroupProfile(BaseModel):
    """A group's profile."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None


class OktaGroup(BaseModel):
    """An Okta group (``OKTA_GROUP``, ``APP_GROUP`` or ``BUILT_IN``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str | None = None
    profile: OktaGroupProfile


class GroupList(BaseModel):
    """Groups gathered over one or more pages.

    Attributes:
        items: The groups.
        pages: Pages fetched.
        truncated: More pages existed beyond ``max_pages``.
    """

    items: list[OktaGroup]
    pages: int
    truncated: bool


class GroupMembership(BaseModel):
    """A user's membership of a group (the PUT answers 204, so this is ours)."""

    group_id: str
    user_id: str


class CreateUserParams(BaseModel):
    """Input of :meth:`OktaClient.create_user`.

    Attributes:
        first_name: Given name.
        last_name: Family name.
        email: Primary email.
        login: Okta login (defaults to ``email``).
        group_ids: Groups to put the user in (also ensured when the user already exists).
        activate: Activate on creation (``?activate=true``) or leave ``STAGED``.
    """

    first_name: str = Field(min_length=1)
    last_name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    login: str | None = None
    group_ids: list[str] = Field(default_factory=list)
    activate: bool = True

    @model_validator(mode="after")
    def _default_login(self) -> CreateUserParams:
        if not self.login:
            self.login = self.email
        return self


class GetUserParams(BaseModel):
    """Input of :meth:`OktaClient.get_user`.

    Attributes:
        login: The login (or the user id, or an unambiguous login short name).
    """

    login: str = Field(min_length=1)


class ListGroupsParams(BaseModel):
    """Input of :meth:`OktaClient.list_groups`.

    Attributes:
        q: Finds groups whose name starts with this.
        search: An Okta search expression (``type eq "OKTA_GROUP"``).
        limit: Groups per page.
        max_pages: Stop following ``rel="next"`` after this many pages.
    """

    q: str | None = None
    search: str | None = None
    limit: int = Field(200, ge=1, le=10000)
    max_pages: int = Field(10, ge=1, le=1000)


class AddUserToGroupParams(BaseModel):
    """Input of :meth:`OktaClient.add_user_to_group`."""

    group_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)


class DeactivateUserParams(BaseModel):
    """Input of :meth:`OktaClient.deactivate_user`.

    Attributes:
        user_id: User id or login.
        send_email: Email the admins about the deactivation.
    """

    user_id: str = Field(min_length=1)
    send_email: bool = False


# --- the client ---------------------------------------------------------------------------


def _error_body(exc: APIStatusError) -> dict[str, Any]:
    try:
        body = json.loads(exc.body_excerpt)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def is_login_taken(exc: APIStatusError) -> bool:
    """Whether an error is Okta's "login: An object with this field already exists"."""
    if not isinstance(exc, BadRequestError):
        return False
    body = _error_body(exc)
    if body:
        if body.get("errorCode") != "E0000001":
            return False
        causes = body.get("errorCauses") or []
        summaries = " ".join(str(c.get("errorSummary", "")) for c in causes if isinstance(c, dict))
        return "login" in summaries and "already exists" in summaries
    # A body cut by the excerpt limit: fall back to the text.
    text = exc.body_excerpt
    return "E0000001" in text and "login" in text and "already exists" in text


class OktaClient(IntegrationClient):
    """Typed client of the Okta Management API."""

    service = "okta"

    async def _find_user(self, login: str, action: str) -> OktaUser | None:
        try:
            return await self.request(
                "GET",
                self.path("/api/v1/users/{login}", login=login),
                action=action,
                model=OktaUser,
            )
        except NotFoundError:
            return None

    @action(read_only=False, idempotent=True)
    async def create_user(self, params: CreateUserParams) -> OktaUser:
        """Create (and by default activate) a user, or return the existing one.

        Retry-safe: Okta refuses a duplicate login, and its 400 ``E0000001`` "login
        already exists" (a lost response to our own earlier attempt, an earlier run, or
        a race) is answered by fetching that user. ``group_ids`` are ensured either
        way. An existing user is returned whatever its status (a ``DEPROVISIONED`` user
        still holds its login, so Okta would refuse a new one anyway): check ``status``.

        Args:
            params: Names, email, login, groups and whether to activate.

        Returns:
            The user; ``unchanged`` tells whether it was there before.
        """
        login = params.login or params.email
        # Okta refuses a second user with the same login (400 E0000001), so the create
        # goes first and the lookup runs only when the login is taken: one request on
        # the common path instead of two.
        body: dict[str, Any] = {
            "profile": {
                "firstName": params.first_name,
                "lastName": params.last_name,
                "email": params.email,
                "login": login,
            }
        }
        if params.group_ids:
            body["groupIds"] = params.group_ids
        try:
            return await self.request(
                "POST",
                "/api/v1/users",
                action="create_user",
                model=OktaUser,
                params={"activate": str(params.activate).lower()},
                json=body,
                idempotent=True,  # Okta enforces unique logins: a replay cannot duplicate
            )
        except BadRequestError as exc:
            if not is_login_taken(exc):
                raise
            user = await self._find_user(login, "create_user")
            if user is None:
                raise
        for group_id in params.group_ids:
            await self._put_member(group_id, user.id, "create_user")
        user.unchanged = True
        return user

    @action(read_only=True)
    async def get_user(self, params: GetUserParams) -> OktaUser:
        """Fetch a user by login (or id).

        Args:
            params: The login.

        Returns:
            The user.

        Raises:
            NotFoundError: No such user.
        """
        return await self.request(
            "GET",
            self.path("/api/v1/users/{login}", login=params.login),
            action="get_user",
            model=OktaUser,
        )

    @action(read_only=True)
    async def list_groups(self, params: ListGroupsParams) -> GroupList:
        """List groups, following ``Link: rel="next"`` up to ``max_pages``.

        Args:
            params: Name prefix or search expression, page size and page cap.

        Returns:
            The groups and whether the list was cut short.
        """
        query: dict[str, Any] = {"limit": params.limit}
        if params.q:
            query["q"] = params.q
        if params.search:
            query["search"] = params.search
        pages, truncated = await self.link_pages(
            "/api/v1/groups",
            action="list_groups",
            model=list[OktaGroup],
            params=query,
            max_pages=params.max_pages,
        )
        items = [group for page in pages for group in page]
        return GroupList(items=items, pages=len(pages), truncated=truncated)

    async def _put_member(self, group_id: str, user_id: str, action: str) -> None:
        await self.request(
            "PUT",
            self.path("/api/v1/groups/{group}/users/{user}", group=group_id, user=user_id),
            action=action,
            expect="none",
        )

    @action(read_only=False, idempotent=True)
    async def add_user_to_group(self, params: AddUserToGroupParams) -> GroupMembership:
        """Add a user to a group (a PUT: adding an existing member changes nothing).

        Args:
            params: Group id and user id.

        Returns:
            The membership.
        """
        await self._put_member(params.group_id, params.user_id, "add_user_to_group")
        return GroupMembership(group_id=params.group_id, user_id=params.user_id)

    @action(read_only=False, idempotent=True)
    async def deactivate_user(self, params: DeactivateUserParams) -> OktaUser:
        """Deactivate a user (status ``DEPROVISIONED``); already deactivated is success.

        Okta refuses to deactivate a ``DEPROVISIONED`` user (404 ``E0000007``), so the
        status is checked first, and a refusal after a lost response is re-checked.

        Args:
            params: User id or login, and whether to email the admins.

        Returns:
            The user as it is now; ``unchanged`` is True when it was already
            deactivated.

        Raises:
            NotFoundError: No such user.
        """
        user = await self.request(
            "GET",
            self.path("/api/v1/users/{user}", user=params.user_id),
            action="deactivate_user",
            model=OktaUser,
        )
        if user.status == "DEPROVISIONED":
            user.unchanged = True
            return user
        refused: NotFoundError | None = None
        try:
            await self.request(
                "POST",
                self.path("/api/v1/users/{user}/lifecycle/deactivate", user=user.id),
                action="deactivate_user",
                params={"sendEmail": str(params.send_email).lower()},
                expect="none",
                idempotent=True,  # a replay meets "already deactivated", handled below
            )
        except NotFoundError as exc:
            refused = exc  # our earlier attempt may have landed: the re-read decides
        user = await self.request(
            "GET",
            self.path("/api/v1/users/{user}", user=user.id),
            action="deactivate_user",
            model=OktaUser,
        )
        if refused is not None and "DEPROVISIONED" not in (
            user.status,
            user.transitioningToStatus,
        ):
            raise refused
        return user
