"""ServiceNow Table API: create and read incidents.

Follows the Table API reference,
https://developer.servicenow.com/dev.do#!/reference/api/latest/rest/c_TableAPI
(``POST /api/now/table/incident``, ``GET /api/now/table/incident/{sys_id}``, ``GET
/api/now/table/incident?sysparm_query=...``). Answers are wrapped in ``{"result": ...}``;
field values are strings. Auth is HTTP basic. The base URL is the instance
(``https://<instance>.service-now.com``).

Retry- and rerun-safety of :meth:`ServiceNowClient.create_incident`: every incident
carries a ``correlation_id``, ServiceNow's field for the id of the record in the calling
system: the caller's, else one derived from the incident's fields (never random, so the
same request made again carries the same id). Before the first attempt and every
re-attempt the client reads ``GET
/api/now/table/incident?sysparm_query=correlation_id=<id>`` (with a derived id, only
an active incident counts: the same summary after the first is closed opens a new one);
the Table API reads the database, so a committed incident is always found and returned
instead of duplicated.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import NotFoundError
from integrations.idempotency import derived_key

TABLE = "/api/now/table/incident"
# Reference fields as plain sys_id strings instead of {"link", "value"} objects.
_FLAT = {"sysparm_exclude_reference_link": "true"}


# --- inputs -------------------------------------------------------------------------------


class CreateIncidentParams(BaseModel):
    """Input of :meth:`ServiceNowClient.create_incident`.

    Attributes:
        short_description: One-line summary.
        description: Details.
        urgency: ``1`` (high) to ``3`` (low).
        impact: ``1`` (high) to ``3`` (low).
        category: Category (``network``, ``software``...).
        caller_id: sys_id or user name of the caller.
        assignment_group: sys_id or name of the assignment group.
        correlation_id: Id of this incident in the calling system (e.g. ``<run
            id>:<step>``); makes the create retry- and rerun-safe. Default: derived from
            the other fields (see :attr:`key`). ``^`` is not allowed (it separates
            encoded-query terms).
        correlation_display: Name of the calling system.
    """

    short_description: str = Field(min_length=1, max_length=160)
    description: str | None = None
    urgency: int | None = Field(None, ge=1, le=3)
    impact: int | None = Field(None, ge=1, le=3)
    category: str | None = None
    caller_id: str | None = None
    assignment_group: str | None = None
    correlation_id: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[^^]+$")
    correlation_display: str = "Junction"

    @property
    def key(self) -> str:
        """The correlation id: the caller's, else derived from the incident's fields."""
        return derived_key(
            self.correlation_id,
            self.short_description,
            self.description,
            self.category,
            self.caller_id,
            self.assignment_group,
        )

    def body(self) -> dict[str, str]:
        """The record to insert (Table API field names, string values)."""
        body = {
            "short_description": self.short_description,
            "correlation_id": self.key,
            "correlation_display": self.correlation_display,
        }
        for key in (
            "description",
            "urgency",
            "impact",
            "category",
            "caller_id",
            "assignment_group",
        ):
            value = getattr(self, key)
            if value is not None:
                body[key] = str(value)
        return body


class GetIncidentParams(BaseModel):
    """Input of :meth:`ServiceNowClient.get_incident`: one of ``sys_id`` or ``number``.

    Attributes:
        sys_id: The record's sys_id.
        number: The incident number (``INC0010001``).
    """

    sys_id: str | None = Field(None, pattern=r"^[0-9a-zA-Z]+$")
    number: str | None = Field(None, pattern=r"^[A-Za-z0-9]+$")

    @model_validator(mode="after")
    def _one(self) -> GetIncidentParams:
        if (self.sys_id is None) == (self.number is None):
            raise ValueError("give exactly one of sys_id or number")
        return self


# --- outputs ------------------------------------------------------------------------------


class ServiceNowIncident(BaseModel):
    """An incident record (the fields Junction reads; all values are strings).

    Attributes:
        existing: Set by Junction (not a ServiceNow field): found by correlation id on
            a retry rather than created by this call.
    """

    model_config = ConfigDict(extra="allow")

    sys_id: str
    number: str
    short_description: str | None = None
    description: str | None = None
    state: str | None = None
    urgency: str | None = None
    impact: str | None = None
    correlation_id: str | None = None
    sys_created_on: str | None = None
    existing: bool = False


class IncidentResult(BaseModel):
    """``{"result": {...}}``."""

    model_config = ConfigDict(extra="allow")

    result: ServiceNowIncident


class IncidentListResult(BaseModel):
    """``{"result": [...]}``."""

    model_config = ConfigDict(extra="allow")

    result: list[ServiceNowIncident]


# --- client -------------------------------------------------------------------------------


class ServiceNowClient(IntegrationClient):
    """Typed ServiceNow Table API client (``get_client("servicenow")``)."""

    service = "servicenow"

    async def _by_query(self, query: str, action: str) -> ServiceNowIncident | None:
        found = await self.request(
            "GET",
            TABLE,
            action=action,
            model=IncidentListResult,
            params={**_FLAT, "sysparm_query": query, "sysparm_limit": "1"},
        )
        return found.result[0] if found.result else None

    @action(read_only=False, idempotent=True, key_field="correlation_id")
    async def create_incident(self, params: CreateIncidentParams) -> ServiceNowIncident:
        """Create an incident, safely retried and rerun (check-before-create by correlation id).

        Args:
            params: The incident's fields and correlation id.

        Returns:
            The created incident, or (``existing=True``) the one an earlier attempt or run
            created.
        """
        query = f"correlation_id={params.key}"
        if params.correlation_id is None:
            query += "^active=true"  # a derived id: a closed incident is history

        async def lookup() -> ServiceNowIncident | None:
            found = await self._by_query(query, "create_incident.lookup")
            return found.model_copy(update={"existing": True}) if found else None

        async def create() -> ServiceNowIncident:
            created = await self.request(
                "POST",
                TABLE,
                action="create_incident",
                model=IncidentResult,
                params=_FLAT,
                json=params.body(),
                idempotent=False,
                max_attempts=1,  # re-attempts go through lookup() first
            )
            return created.result

        return await self.create_once(lookup=lookup, create=create, lookup_first=True)

    @action(read_only=True)
    async def get_incident(self, params: GetIncidentParams) -> ServiceNowIncident:
        """Read an incident by sys_id or number.

        Args:
            params: The sys_id or the number.

        Returns:
            The incident.

        Raises:
            NotFoundError: No such incident.
        """
        if params.sys_id is not None:
            got = await self.request(
                "GET",
                self.path(TABLE + "/{sys_id}", sys_id=params.sys_id),
                action="get_incident",
                model=IncidentResult,
                params=_FLAT,
            )
            return got.result
        found = await self._by_query(f"number={params.number}", "get_incident")
        if found is None:
            raise NotFoundError(
                f"no incident numbered {params.number}",
                status_code=404,
                service=self.name,
                action="get_incident",
            )
        return found
