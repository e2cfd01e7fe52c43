"""Contract: every PagerDuty REST action, sent to Prism serving PagerDuty's REST API v2
spec (PagerDuty/api-schema ``openapiv3.json``), is accepted; a request that breaks the
spec is rejected.

The spec's quirks are the client's normal behaviour: ``Content-Type: application/json``
on every request (GETs too) and ``From`` on POST/PUT; the catalog's Accept lists
``application/json`` after PagerDuty's vendor type (Prism answers 406 to the vendor type
alone). Not covered here: ``send_event`` (the Events API v2 is a separate API with no
spec in the shared specs; it is tested against the sandbox), and an incident ``details``
text: the spec types ``IncidentBody.details`` as an object, while PagerDuty's own request
example (and API) use a string, so Prism rejects the documented form.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import BadRequestError
from integrations.pagerduty import (
    CreateIncidentParams,
    ListIncidentsParams,
    PagerDutyClient,
    UpdateIncidentParams,
)
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)
ME = "oncall@example.com"


def client(prism_servers: dict[str, str]) -> PagerDutyClient:
    c = get_client(
        "pagerduty",
        base_url=prism_servers["pagerduty"],
        credentials=Credentials(token=SecretStr("u+x")),
        retry=ONCE,
        breaker=CircuitBreaker("pagerduty", failure_threshold=1000),
    )
    assert isinstance(c, PagerDutyClient)
    return c


async def test_create_incident_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        incident = await c.create_incident(
            CreateIncidentParams(
                title="Checkout 5xx",
                service_id="PWIXJZS",
                urgency="high",
                incident_key="baf7cf21b1da41b4b0221008339ff357",
                escalation_policy_id="PT20YPA",
                priority_id="P53ZZH5",
                from_email=ME,
            )
        )
    assert incident.id and not incident.existing


async def test_list_incidents_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        page = await c.list_incidents(
            ListIncidentsParams(
                statuses=["triggered", "acknowledged"],
                urgencies=["high"],
                service_ids=["PWIXJZS"],
                incident_key="k1",
                limit=10,
                offset=10,
            )
        )
        everything = await c.list_incidents(ListIncidentsParams())
    assert page.incidents and everything.incidents


async def test_update_incident_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        acked = await c.update_incident(
            UpdateIncidentParams(incident_id="PT4KHLK", status="acknowledged", from_email=ME)
        )
        resolved = await c.update_incident(
            UpdateIncidentParams(
                incident_id="PT4KHLK", status="resolved", resolution="rolled back", from_email=ME
            )
        )
    assert acked.id == resolved.id == "PT4KHLK"


async def test_lookup_by_incident_key_and_health_accepted(prism_servers: dict[str, str]) -> None:
    """The duplicate-key lookup ``create_incident`` makes on a 400, and the health check."""
    async with (c := client(prism_servers)):
        found = await c._open_incident("baf7cf21b1da41b4b0221008339ff357")
        health = await c.health_check()
    assert health.ok, health.error
    assert found is None  # Prism's example incident with that key is resolved


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """An incident without its required ``title``: Prism answers 400 (the spec's own)."""
    async with (c := client(prism_servers)):
        with pytest.raises(BadRequestError):
            await c.request(
                "POST",
                "/incidents",
                action="raw",
                headers={"Content-Type": "application/json", "From": ME},
                json={
                    "incident": {
                        "type": "incident",
                        "service": {"id": "S1", "type": "service_reference"},
                    }
                },
            )
