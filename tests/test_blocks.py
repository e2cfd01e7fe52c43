"""Credentials as typed Prefect blocks on a REAL `prefect server start` (one per module):
the types registered, a block document made with a secret, an integration's credentials
resolved from it, and the secret nowhere in the server's logs or artifacts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from deployments.blocks import register_blocks
from deployments.local import PrefectServer
from integrations.catalog import load_catalog
from integrations.config import IntegrationConfig
from integrations.credential_blocks import BLOCK_TYPES
from integrations.errors import MissingCredentialsError
from tests import test_deployments

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(600)]

# test_deployments' real server and its client, one of each for this module.
prefect_server = test_deployments.postgres_prefect_server
api = test_deployments.api

SECRET = "blk-s3cret-9f2c41d7e0"
SECRET_FIELD = {  # block type -> its SecretStr field (the UI's password field)
    "junction-bearer-token": "token",
    "junction-api-key": "api_key",
    "junction-basic-auth": "password",
    "junction-oauth-client-credentials": "client_secret",
}
SLUGS = list(SECRET_FIELD)


@pytest.fixture(scope="module")
def registered(prefect_server: PrefectServer) -> list[str]:
    """The block types registered, then an API-key block saved (its secret in SECRET)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from integrations.credential_blocks import ApiKeyCredentials, BasicAuthCredentials

    slugs = register_blocks(prefect_server.api_url)
    assert register_blocks(prefect_server.api_url) == slugs  # again: nothing new, no error
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        ApiKeyCredentials(api_key=SECRET).save("okta-key", _sync=True)  # type: ignore[call-arg]
        BasicAuthCredentials(username="ops@example.com", password=SECRET).save(  # type: ignore[call-arg]
            "jira-basic", _sync=True
        )
    return slugs


def test_every_scheme_has_a_registered_type_with_secret_fields(
    registered: list[str], api: httpx.Client
) -> None:
    assert registered == SLUGS
    for slug in SLUGS:
        kind = api.get(f"/block_types/slug/{slug}")
        assert kind.status_code == 200, kind.text
        schemas = api.post(
            "/block_schemas/filter",
            json={"block_schemas": {"block_type_id": {"any_": [kind.json()["id"]]}}},
        ).json()
        assert schemas[0]["fields"]["secret_fields"] == [SECRET_FIELD[slug]], schemas[0]
    # Every scheme the catalog uses has its type.
    schemes = {s.auth.scheme for s in load_catalog()} - {"none"}
    assert schemes == set(BLOCK_TYPES)


def test_the_api_never_returns_the_secret(registered: list[str], api: httpx.Client) -> None:
    docs = api.post("/block_documents/filter", json={}).json()
    names = {d["name"] for d in docs}
    assert {"okta-key", "jira-basic"} <= names
    assert SECRET not in json.dumps(docs)


def test_credentials_resolve_from_the_typed_block(
    registered: list[str], prefect_server: PrefectServer
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from integrations.auth import resolve_credentials

    catalog = load_catalog()
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        okta = resolve_credentials(
            catalog.get("okta"),
            IntegrationConfig(secret_block="junction-api-key/okta-key"),
            sandbox=True,  # the block wins over the sandbox's test credentials
        )
        jira = resolve_credentials(
            catalog.get("jira"),
            IntegrationConfig(secret_block="junction-basic-auth/jira-basic"),
            sandbox=False,
        )
        assert okta.token is not None and okta.token.get_secret_value() == SECRET
        assert okta.source == "block:junction-api-key/okta-key"
        assert jira.username == "ops@example.com" and jira.password is not None
        assert jira.password.get_secret_value() == SECRET
        assert SECRET not in repr(okta) + repr(jira)

        # The wrong type for the scheme, and a block that does not exist: one line each.
        with pytest.raises(MissingCredentialsError) as wrong:
            resolve_credentials(
                catalog.get("github"),
                IntegrationConfig(secret_block="junction-api-key/okta-key"),
                sandbox=False,
            )
        assert "JUNCTION_GITHUB_SECRET_BLOCK='junction-api-key/okta-key'" in str(wrong.value)
        assert "'junction-bearer-token'" in str(wrong.value)
        with pytest.raises(MissingCredentialsError) as missing:
            resolve_credentials(
                catalog.get("github"),
                IntegrationConfig(secret_block="junction-bearer-token/nope"),
                sandbox=False,
            )
        message = str(missing.value)
        assert "does not exist" in message and "Junction Bearer Token" in message
        assert "\n" not in message + str(wrong.value)


def test_a_sweep_with_the_block_never_logs_or_publishes_the_secret(
    registered: list[str],
    prefect_server: PrefectServer,
    api: httpx.Client,
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sandbox refuses the block's key (not its test token): the failed probe's error
    goes into the run's log and the health table, never the key."""
    import asyncio

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.health_sweep import health_sweep
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("JUNCTION_OKTA_SECRET_BLOCK", "junction-api-key/okta-key")
    get_settings.cache_clear()
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
            results: Any = asyncio.run(health_sweep(names=["okta"]))
    finally:
        get_settings.cache_clear()
    assert [r.ok for r in results] == [False], results  # the sandbox wants its own token
    artifacts = api.post(
        "/artifacts/filter", json={"artifacts": {"key": {"any_": ["integration-health"]}}}
    ).json()
    assert artifacts and "okta" in json.dumps(artifacts)
    logs: list[dict[str, Any]] = []
    for _ in range(20):  # the run's logs are sent in batches
        logs = api.post("/logs/filter", json={"limit": 200}).json()
        if any("okta" in log["message"] for log in logs):
            break
        time.sleep(0.5)
    assert logs, "the flow run logged nothing"
    assert SECRET not in json.dumps(artifacts) + json.dumps(logs)
