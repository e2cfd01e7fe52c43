"""Workday (HCM): workers, and the hires and terminations of a date range.

Reference followed: Workday's REST API directory, "Common" service v1 (the ``workers``
resource), https://community.workday.com/sites/default/files/file-hosting/restapi/
(tenant-specific, behind the Workday Community login). Workday publishes no public
machine-readable spec (only SOAP WSDLs and this per-tenant REST reference), so there is
no Prism contract test for Workday; the client is tested against Junction's sandbox.

What the client relies on:

- Base URL ``https://{host}/ccx/api/v1/{tenant}``; OAuth2 (an API client registered in
  the tenant; the engine fetches and refreshes the bearer token from
  ``https://{host}/ccx/oauth2/{tenant}/token``).
- ``GET /workers/{ID}`` (ID = the Workday ID, WID) and
  ``GET /workers?limit&offset&search``; collections answer ``{"total": N, "data":
  [...]}`` and page with ``limit`` (at most 100) and a zero-based ``offset``.
- Errors answer ``{"error": "...", "errors": [{"error": "...", "field": "..."}]}``.

Assumed (say so when a tenant differs): the REST API has no documented query for "hires
(or terminations) between two dates" -- Workday's own routes for that are a custom
report (RaaS) or SOAP ``Get_Workers`` with transaction-log criteria. ``list_hires`` and
``list_terminations`` therefore page through ``/workers`` and keep the workers whose
``hireDate`` / ``terminationDate`` falls in the range. Those two fields are assumed to
be present on the tenant's worker payload (they are part of Workday's staffing data,
but visibility depends on the API client's security domains), and terminated workers
are assumed to be returned by ``/workers`` (tenant setting). A worker without the field
is never counted. ``max_pages`` bounds the cost on large tenants, and ``truncated``
says when it cut the scan short.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient

PAGE_LIMIT_MAX = 100
"""Workday's cap on ``limit``."""


# --- models -------------------------------------------------------------------------------


class ResourceRef(BaseModel):
    """A reference to another Workday object (``{"id", "descriptor", "href"}``)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    descriptor: str | None = None
    href: str | None = None


class Worker(BaseModel):
    """A worker (employee or contingent worker).

    Attributes:
        id: The Workday ID (WID).
        descriptor: Display name.
        worker_id: The employee / contingent worker number (``workerId``).
        hire_date: ``hireDate`` (assumed present, see the module docstring).
        termination_date: ``terminationDate``, when terminated.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    descriptor: str | None = None
    href: str | None = None
    worker_id: str | None = Field(None, validation_alias=AliasChoices("workerId", "workerID"))
    primary_work_email: str | None = Field(None, validation_alias="primaryWorkEmail")
    business_title: str | None = Field(None, validation_alias="businessTitle")
    is_manager: bool | None = Field(None, validation_alias="isManager")
    primary_supervisory_organization: ResourceRef | None = Field(
        None, validation_alias="primarySupervisoryOrganization"
    )
    location: ResourceRef | None = None
    worker_type: ResourceRef | None = Field(None, validation_alias="workerType")
    hire_date: date | None = Field(None, validation_alias="hireDate")
    termination_date: date | None = Field(None, validation_alias="terminationDate")


class WorkerPage(BaseModel):
    """One page of ``GET /workers``: ``{"total": N, "data": [...]}``."""

    model_config = ConfigDict(extra="allow")

    total: int = Field(ge=0)
    data: list[Worker]


class WorkerList(BaseModel):
    """Workers gathered over pages.

    Attributes:
        items: The workers (for hires/terminations: only those in the range).
        total: Workday's ``total`` of the underlying ``/workers`` query.
        scanned: Workers read.
        truncated: The scan stopped at ``max_pages`` before reaching ``total``.
    """

    items: list[Worker]
    total: int
    scanned: int
    truncated: bool


class GetWorkerParams(BaseModel):
    """Input of :meth:`WorkdayClient.get_worker`."""

    worker_id: str = Field(min_length=1, description="The Workday ID (WID).")


class ListWorkersParams(BaseModel):
    """Input of :meth:`WorkdayClient.list_workers`.

    Attributes:
        search: Worker name search (case-insensitive).
        limit: Page size (at most 100).
        offset: Zero-based index of the first worker.
        max_pages: Pages to read at most.
    """

    search: str | None = None
    limit: int = Field(PAGE_LIMIT_MAX, ge=1, le=PAGE_LIMIT_MAX)
    offset: int = Field(0, ge=0)
    max_pages: int = Field(1, ge=1, le=1000)


class DateRangeParams(BaseModel):
    """Input of :meth:`WorkdayClient.list_hires` and :meth:`WorkdayClient.list_terminations`.

    Attributes:
        start: First day of the range (inclusive).
        end: Last day of the range (inclusive).
        max_pages: Pages of 100 workers to scan at most.
    """

    start: date
    end: date
    max_pages: int = Field(100, ge=1, le=10000)

    @model_validator(mode="after")
    def _ordered(self) -> DateRangeParams:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self


# --- the client ---------------------------------------------------------------------------


class WorkdayClient(IntegrationClient):
    """Typed client of the Workday REST API (workers)."""

    service = "workday"

    async def _scan(
        self, query: dict[str, Any], *, limit: int, offset: int, max_pages: int, action: str
    ) -> tuple[list[Worker], int, bool]:
        """Page ``GET /workers`` by limit/offset; returns (workers, total, truncated)."""
        workers: list[Worker] = []
        total = 0
        pages = 0
        while pages < max_pages:
            page = await self.request(
                "GET",
                "/workers",
                action=action,
                model=WorkerPage,
                params={**query, "limit": limit, "offset": offset},
            )
            pages += 1
            total = page.total
            workers.extend(page.data)
            offset += len(page.data)
            if not page.data or offset >= total:
                return workers, total, False
        return workers, total, offset < total

    @action(read_only=True)
    async def get_worker(self, params: GetWorkerParams) -> Worker:
        """Fetch one worker by Workday ID.

        Args:
            params: The worker's WID.

        Returns:
            The worker.

        Raises:
            NotFoundError: No such worker.
        """
        return await self.request(
            "GET",
            self.path("/workers/{worker}", worker=params.worker_id),
            action="get_worker",
            model=Worker,
        )

    @action(read_only=True)
    async def list_workers(self, params: ListWorkersParams) -> WorkerList:
        """List (or search) workers, ``max_pages`` pages from ``offset``.

        Args:
            params: Search text and paging.

        Returns:
            The workers and Workday's ``total``.
        """
        query = {"search": params.search} if params.search else {}
        workers, total, truncated = await self._scan(
            query,
            limit=params.limit,
            offset=params.offset,
            max_pages=params.max_pages,
            action="list_workers",
        )
        return WorkerList(items=workers, total=total, scanned=len(workers), truncated=truncated)

    async def _in_range(self, params: DateRangeParams, field: str, action: str) -> WorkerList:
        workers, total, truncated = await self._scan(
            {}, limit=PAGE_LIMIT_MAX, offset=0, max_pages=params.max_pages, action=action
        )
        hits = [
            w
            for w in workers
            if (day := getattr(w, field)) is not None and params.start <= day <= params.end
        ]
        return WorkerList(items=hits, total=total, scanned=len(workers), truncated=truncated)

    @action(read_only=True)
    async def list_hires(self, params: DateRangeParams) -> WorkerList:
        """Workers hired between ``start`` and ``end`` (inclusive), by ``hireDate``.

        Args:
            params: The date range and the scan's page cap.

        Returns:
            The hires; ``truncated`` when the scan stopped early.
        """
        return await self._in_range(params, "hire_date", "list_hires")

    @action(read_only=True)
    async def list_terminations(self, params: DateRangeParams) -> WorkerList:
        """Workers terminated between ``start`` and ``end`` (inclusive), by ``terminationDate``.

        Args:
            params: The date range and the scan's page cap.

        Returns:
            The terminations; ``truncated`` when the scan stopped early.
        """
        return await self._in_range(params, "termination_date", "list_terminations")
