"""Every side-effecting action, made twice with the same input and no key, leaves one
vendor object (issue 9 #2, the client side).

The second call comes from a fresh client, as a rerun after a crash would: nothing is
shared but the input. Where a vendor takes an idempotency key, a correlation id or a
searchable marker, the key is derived from the input (never random), so the rerun finds
the first run's object instead of creating another. For the actions that look their key
up in a history (Slack, Teams, Jira comments): a retry after a lost answer finds the
committed object, and a different request still creates a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from integrations.alertmanager import AlertmanagerClient, CreateSilenceParams, Matcher
from integrations.base import IntegrationClient
from integrations.catalog import load_catalog
from integrations.github import CreateIssueParams as GitHubIssueParams
from integrations.github import GitHubClient
from integrations.gitlab import CreateIssueParams as GitLabIssueParams
from integrations.gitlab import GitLabClient, TriggerPipelineParams
from integrations.jira import AddCommentParams, JiraClient
from integrations.jira import CreateIssueParams as JiraIssueParams
from integrations.pagerduty import CreateIncidentParams, PagerDutyClient, SendEventParams
from integrations.registry import client_class
from integrations.sandbox.app import SandboxServer
from integrations.servicenow import CreateIncidentParams as SnowIncidentParams
from integrations.servicenow import ServiceNowClient
from integrations.slack import PostMessageParams, SlackClient
from integrations.teams import SendChannelMessageParams, TeamsClient
from integrations.webhook import SendWebhookParams, WebhookClient
from tests.helpers import ClientFactory, collection


@dataclass(frozen=True)
class Case:
    """One keyed action: how to call it, and where its objects are counted."""

    client: type[IntegrationClient]
    call: Callable[[Any], Any]
    service: str
    objects: str
    found: Callable[[Any], bool]  # the second result says it was found, not created
    only: Callable[[dict[str, Any]], bool] = lambda obj: True


ME = "oncall@example.com"
TEAM = "7a1f3c2e-0000-4000-8000-000000000001"
OPS = "19:ops000000000000000000000000000@thread.tacv2"


async def comment(client: JiraClient, body: str = "Laptop shipped") -> Any:
    """Comment on the issue of the same request (created once: its own lookup finds it)."""
    issue = await client.create_issue(JiraIssueParams(project_key="OPS", summary="Laptop for Ada"))
    return await client.add_comment(AddCommentParams(issue_key=issue.key, body=body))


CASES = {
    "servicenow.create_incident": Case(
        ServiceNowClient,
        lambda c: c.create_incident(SnowIncidentParams(short_description="Laptop for Ada")),
        "servicenow",
        "incident",
        lambda r: r.existing,
    ),
    "jira.create_issue": Case(
        JiraClient,
        lambda c: c.create_issue(JiraIssueParams(project_key="OPS", summary="Laptop for Ada")),
        "jira",
        "issues",
        lambda r: r.existing,
    ),
    "github.create_issue": Case(
        GitHubClient,
        lambda c: c.create_issue(
            GitHubIssueParams(owner="junction-org", repo="app", title="CI red on main")
        ),
        "github",
        "issues",
        lambda r: r.existing,
    ),
    "gitlab.create_issue": Case(
        GitLabClient,
        lambda c: c.create_issue(GitLabIssueParams(project=1, title="CI red on main")),
        "gitlab",
        "issues",
        lambda r: r.unchanged,
    ),
    "gitlab.trigger_pipeline": Case(
        GitLabClient,
        lambda c: c.trigger_pipeline(TriggerPipelineParams(project=1, ref="main")),
        "gitlab",
        "pipelines",
        lambda r: r.unchanged,
        only=lambda p: p.get("source") == "api",
    ),
    "pagerduty.create_incident": Case(
        PagerDutyClient,
        lambda c: c.create_incident(
            CreateIncidentParams(title="Okta down", service_id="PSANDB1", from_email=ME)
        ),
        "pagerduty",
        "incidents",
        lambda r: r.existing,
    ),
    "pagerduty.send_event": Case(
        PagerDutyClient,
        lambda c: c.send_event(
            SendEventParams(
                summary="Okta down",
                source="junction",
                severity="critical",
                routing_key="R0UT1NGKEYsandbox0000000000000001",
            )
        ),
        "pagerduty",
        "alerts",
        lambda r: True,  # PagerDuty folds the repeat into the same alert by dedup_key
    ),
    "alertmanager.create_silence": Case(
        AlertmanagerClient,
        lambda c: c.create_silence(
            CreateSilenceParams(
                matchers=[Matcher(name="service", value="okta")],
                comment="maintenance",
                created_by="ops",
                ends_at="2099-01-01T00:00:00Z",
            )
        ),
        "alertmanager",
        "silences",
        lambda r: r.existing,
    ),
    "webhook.send": Case(
        WebhookClient,
        lambda c: c.send(SendWebhookParams(payload={"service": "okta", "state": "down"})),
        "webhook",
        "deliveries",
        lambda r: True,  # the receiver dedupes on the Idempotency-Key
    ),
    "slack.post_message": Case(
        SlackClient,
        lambda c: c.post_message(PostMessageParams(channel="#ops", text="Okta down")),
        "slack",
        "messages",
        lambda r: r.existing,
    ),
    "teams.send_channel_message": Case(
        TeamsClient,
        lambda c: c.send_channel_message(
            SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="Okta down")
        ),
        "teams",
        "messages",
        lambda r: r.existing,
    ),
    "jira.add_comment": Case(JiraClient, comment, "jira", "comments", lambda r: r.existing),
}

# Check-before-create by a history lookup: the same request after a lost answer, and a
# different request, through a fresh client each.
LOOKUP_CASES = {
    "slack.post_message": lambda c: c.post_message(
        PostMessageParams(channel="#ops", text="Okta back")
    ),
    "teams.send_channel_message": lambda c: c.send_channel_message(
        SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="Okta back")
    ),
    "jira.add_comment": lambda c: comment(c, "Laptop delivered"),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_the_same_request_made_twice_leaves_one_object(
    sb: SandboxServer, make_client: ClientFactory, name: str
) -> None:
    case = CASES[name]
    before = {k for k, v in collection(sb, case.service, case.objects).items() if case.only(v)}
    results = []
    for _ in range(2):  # two runs: a fresh client each, nothing shared but the input
        async with (client := make_client(case.client)):
            results.append(await case.call(client))
    after = {k for k, v in collection(sb, case.service, case.objects).items() if case.only(v)}
    assert len(after - before) == 1, f"{name}: {len(after - before)} objects for one request"
    assert case.found(results[1])


@pytest.mark.parametrize("name", list(LOOKUP_CASES))
@pytest.mark.parametrize("mode", ["504", "reset"])
async def test_a_retry_after_a_lost_answer_leaves_one_object(
    sb: SandboxServer, make_client: ClientFactory, name: str, mode: str
) -> None:
    case = CASES[name]
    async with (client := make_client(case.client)):
        await case.call(client)  # the issue (for a comment) exists before the fault
    sb.faults.set(case.service, lost_after_commit=1.0, lost_mode=mode)
    async with (client := make_client(case.client)):
        other = await LOOKUP_CASES[name](client)
    # Each POST's answer was lost once committed; the retry's lookup found the object.
    assert case.found(other)
    assert len(collection(sb, case.service, case.objects)) == 2


@pytest.mark.parametrize("name", list(LOOKUP_CASES))
async def test_a_different_request_still_creates_a_new_object(
    sb: SandboxServer, make_client: ClientFactory, name: str
) -> None:
    case = CASES[name]
    async with (client := make_client(case.client)):
        first = await case.call(client)
    async with (client := make_client(case.client)):
        other = await LOOKUP_CASES[name](client)
    assert not case.found(first) and not case.found(other)
    assert len(collection(sb, case.service, case.objects)) == 2


def test_every_keyed_action_declares_its_key_field_and_is_covered() -> None:
    """The runner passes its key through ``ActionSpec.key_field``; every action that has
    one is in the table above."""
    keyed = {
        f"{spec.name}.{action.name}": action.key_field
        for spec in load_catalog()
        if spec.client
        for action in client_class(spec).actions().values()
        if action.key_field
    }
    assert keyed == {
        "alertmanager.create_silence": "idempotency_key",
        "github.create_issue": "idempotency_key",
        "gitlab.create_issue": "idempotency_key",
        "gitlab.trigger_pipeline": "idempotency_key",
        "jira.add_comment": "idempotency_key",
        "jira.create_issue": "idempotency_key",
        "pagerduty.create_incident": "incident_key",
        "pagerduty.send_event": "dedup_key",
        "servicenow.create_incident": "correlation_id",
        "slack.post_message": "idempotency_key",
        "smtp.send_email": "idempotency_key",
        "teams.send_channel_message": "idempotency_key",
        "webhook.send": "idempotency_key",
    }
    assert set(keyed) - {"smtp.send_email"} <= set(CASES)  # SMTP: tests/test_email.py
