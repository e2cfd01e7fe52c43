"""Credentials as typed Prefect blocks: one block type per auth scheme of the catalog, each
secret a ``SecretStr`` (the Prefect UI shows a password field and the API returns it
obfuscated), so a user creates an integration's credentials in the UI.

An integration names its block in ``JUNCTION_<NAME>_SECRET_BLOCK`` as
``<block type slug>/<block name>`` (``junction-api-key/okta-prod``); a bare name is still a
plain Prefect ``Secret`` block (:mod:`integrations.auth`). ``deployments.blocks``
registers the types with the server (``make serve`` does).
"""

from __future__ import annotations

from typing import ClassVar, cast

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from integrations.auth import Credentials, read_block
from integrations.errors import MissingCredentialsError


class BearerTokenCredentials(Block):
    """A bearer token (``Authorization: Bearer <token>``)."""

    _block_type_name: ClassVar[str] = "Junction Bearer Token"
    _block_type_slug: ClassVar[str] = "junction-bearer-token"
    _description: ClassVar[str] = (
        "An integration's bearer token (GitHub, GitLab, Slack, Webex, Stripe...)."
    )

    token: SecretStr = Field(description="The token, without the 'Bearer ' prefix.")


class ApiKeyCredentials(Block):
    """An API key sent in the integration's header with the catalog's prefix (Okta's
    ``SSWS``, PagerDuty's ``Token token=``, Datadog's ``DD-API-KEY``...)."""

    _block_type_name: ClassVar[str] = "Junction API Key"
    _block_type_slug: ClassVar[str] = "junction-api-key"
    _description: ClassVar[str] = (
        "An integration's API key (Okta SSWS, PagerDuty, Opsgenie, Datadog...); the header "
        "and its prefix come from the integration's catalog entry."
    )

    api_key: SecretStr = Field(description="The key alone, without a prefix such as 'SSWS '.")


class BasicAuthCredentials(Block):
    """A user name and password or API token (HTTP basic, SMTP)."""

    _block_type_name: ClassVar[str] = "Junction Basic Auth"
    _block_type_slug: ClassVar[str] = "junction-basic-auth"
    _description: ClassVar[str] = (
        "An integration's user and password or API token (Jira, ServiceNow, Zendesk, SMTP...)."
    )

    username: str = Field(description="User name or email.")
    password: SecretStr = Field(description="Password or API token.")


class OAuthClientCredentials(Block):
    """An OAuth2 client (client-credentials grant)."""

    _block_type_name: ClassVar[str] = "Junction OAuth Client Credentials"
    _block_type_slug: ClassVar[str] = "junction-oauth-client-credentials"
    _description: ClassVar[str] = (
        "An integration's OAuth2 client for the client-credentials grant (Workday, Teams, "
        "Salesforce...)."
    )

    client_id: str = Field(description="The client id.")
    client_secret: SecretStr = Field(description="The client secret.")


BLOCK_TYPES: dict[str, type[Block]] = {
    "bearer": BearerTokenCredentials,
    "api_key": ApiKeyCredentials,
    "basic": BasicAuthCredentials,
    "oauth2": OAuthClientCredentials,
}
"""The block type of each auth scheme."""


def credentials_of(block: Block, ref: str) -> Credentials:
    """The :class:`~integrations.auth.Credentials` a loaded block holds."""
    source = f"block:{ref}"
    if isinstance(block, BearerTokenCredentials):
        return Credentials(token=block.token, source=source)
    if isinstance(block, ApiKeyCredentials):
        return Credentials(token=block.api_key, source=source)
    if isinstance(block, BasicAuthCredentials):
        return Credentials(username=block.username, password=block.password, source=source)
    if isinstance(block, OAuthClientCredentials):
        return Credentials(
            client_id=block.client_id, client_secret=block.client_secret, source=source
        )
    raise TypeError(f"{type(block).__name__} holds no Junction credentials")


_loaded: dict[str, Credentials] = {}
"""Blocks read by this process (each read is an API round trip)."""


def load_credentials_block(name: str, scheme: str, ref: str) -> Credentials:
    """Load the typed block ``ref`` (``<type slug>/<name>``) for integration ``name``.

    Raises:
        MissingCredentialsError: One line: the type does not fit the scheme, the block is
            missing (and how to create it), or why it could not be read.
    """
    wanted = BLOCK_TYPES[scheme]
    slug, _, block_name = ref.partition("/")
    setting = f"JUNCTION_{name.upper()}_SECRET_BLOCK"
    if slug != wanted.get_block_type_slug():
        raise MissingCredentialsError(
            f"{setting}={ref!r}: {name} uses the {scheme} scheme, whose block type is "
            f"{wanted.get_block_type_slug()!r} (or a plain Secret block's bare name)",
            service=name,
        )
    if ref in _loaded:
        return _loaded[ref]
    missing = (
        f"Prefect block {ref!r} ({setting}) does not exist on the Prefect server in use: "
        f"create it in the Prefect UI (Blocks, {wanted.get_block_type_name()}) or set "
        f"another {setting}"
    )
    # _sync: this runs inside flows' event loops, where load() would return a coroutine
    block = read_block(
        name,
        ref,
        lambda: cast(Block, wanted.load(block_name, _sync=True)),  # type: ignore[call-arg]
        missing,
    )
    _loaded[ref] = credentials_of(block, ref)
    return _loaded[ref]


__all__ = [
    "BLOCK_TYPES",
    "ApiKeyCredentials",
    "BasicAuthCredentials",
    "BearerTokenCredentials",
    "OAuthClientCredentials",
    "credentials_of",
    "load_credentials_block",
]
