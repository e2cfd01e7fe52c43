"""Auth schemes as ``httpx.Auth`` flows, plus credential resolution.

Credentials come from, in order: the caller's argument, the integration's configuration
(which the core fills from ``JUNCTION_<NAME>_*``), the Prefect Secret block it names
(``secret_block``; ``<type slug>/<name>`` names a typed block of
:mod:`integrations.credential_blocks`), and (only when the integration points at the
Junction sandbox) the sandbox's well-known test credentials.

Every secret found is registered with the redactor before it is used, together with every
form it takes on the wire, since a vendor may echo any of them back in an error body:
the full header value (``Bearer ...``, ``SSWS ...``, ``Token token=...``), the base64 of
``user:password`` (HTTP basic, the OAuth2 token request) and ``Basic <that>``, and the
encodings :func:`~integrations.redaction.register_secret` adds (URL, JSON, base64).
OAuth2 access tokens obtained at run time are registered the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import TypeVar, cast

import httpx
from pydantic import SecretStr

from integrations.catalog import AuthSpec, IntegrationSpec
from integrations.config import IntegrationConfig
from integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    MalformedResponseError,
    MissingCredentialsError,
)
from integrations.redaction import register_secret


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials of one integration (secrets stay wrapped)."""

    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    source: str = "none"


T = TypeVar("T")

SANDBOX_TOKEN = "sandbox-token"
SANDBOX_USER = "sandbox-user"
SANDBOX_PASSWORD = "sandbox-password"


def sandbox_credentials(scheme: str) -> Credentials:
    """The credentials the sandbox accepts for ``scheme``."""
    if scheme in ("bearer", "api_key"):
        return Credentials(token=SecretStr(SANDBOX_TOKEN), source="sandbox")
    if scheme == "basic":
        return Credentials(
            username=SANDBOX_USER, password=SecretStr(SANDBOX_PASSWORD), source="sandbox"
        )
    if scheme == "oauth2":
        return Credentials(
            client_id="sandbox-client", client_secret=SecretStr(SANDBOX_PASSWORD), source="sandbox"
        )
    return Credentials(source="none")


def _env_names(name: str, scheme: str) -> str:
    up = f"JUNCTION_{name.upper()}_"
    if scheme == "basic":
        return f"{up}USERNAME and {up}PASSWORD"
    if scheme == "oauth2":
        return f"{up}CLIENT_ID and {up}CLIENT_SECRET"
    return f"{up}TOKEN"


def _from_settings(scheme: str, cfg: IntegrationConfig) -> Credentials | None:
    if scheme in ("bearer", "api_key") and cfg.token:
        return Credentials(token=cfg.token, source="env")
    if scheme == "basic" and cfg.username and cfg.password:
        return Credentials(username=cfg.username, password=cfg.password, source="env")
    if scheme == "oauth2" and cfg.client_id and cfg.client_secret:
        return Credentials(client_id=cfg.client_id, client_secret=cfg.client_secret, source="env")
    return None


_block_cache: dict[str, object] = {}


def _load_secret_block(name: str, scheme: str, block: str) -> object:
    """Load a Prefect Secret block once per process (it costs an API round trip).

    Raises:
        MissingCredentialsError: One line: the block is missing (and how to create it),
            or why it could not be read.
    """
    if block not in _block_cache:
        # Function-level: Prefect's import costs seconds and only block users need it.
        from prefect.blocks.system import Secret

        missing = (
            f"Prefect Secret block {block!r} (JUNCTION_{name.upper()}_SECRET_BLOCK) does "
            f'not exist on the Prefect server in use: create it with `python -c "from '
            f"prefect.blocks.system import Secret; Secret(value={_block_example(scheme)})"
            f".save('{block}')\"` (or in the Prefect UI: Blocks, Secret), or set "
            f"{_env_names(name, scheme)} instead"
        )
        # _sync: this runs inside flows' event loops, where load() would return a coroutine
        _block_cache[block] = read_block(
            name,
            block,
            lambda: cast(Secret, Secret.load(block, _sync=True)).get(),  # type: ignore[call-arg]
            missing,
        )
    return _block_cache[block]


def read_block(name: str, ref: str, load: Callable[[], T], missing: str) -> T:
    """``load()`` (reading a Prefect block of integration ``name``) with Prefect's errors
    as one line.

    Raises:
        MissingCredentialsError: ``missing`` when the block does not exist, else why it
            could not be read (an unreachable API, a block of another type...).
    """
    try:
        return load()
    except ValueError as exc:  # Prefect's "Unable to find block document named ..."
        if "unable to find" not in str(exc).lower():
            raise _block_unreadable(name, ref, exc) from None
        raise MissingCredentialsError(missing, service=name) from None
    except Exception as exc:
        raise _block_unreadable(name, ref, exc) from None


def _block_unreadable(name: str, block: str, exc: Exception) -> MissingCredentialsError:
    detail = " ".join(str(exc).split())[:200]
    return MissingCredentialsError(
        f"could not read Prefect block {block!r} (JUNCTION_{name.upper()}_SECRET_BLOCK):"
        f" {type(exc).__name__}" + (f": {detail}" if detail else ""),
        service=name,
    )


def _block_example(scheme: str) -> str:
    """The value a Secret block holds for ``scheme``, as Python source."""
    if scheme == "basic":
        return "{'username': '...', 'password': '...'}"
    if scheme == "oauth2":
        return "{'client_id': '...', 'client_secret': '...'}"
    return "'<token>'"


def _from_block(name: str, scheme: str, block: str) -> Credentials:
    if "/" in block:  # "<type slug>/<name>": a typed credentials block
        # Function-level: Prefect's import costs seconds and only block users need it.
        from integrations.credential_blocks import load_credentials_block

        return load_credentials_block(name, scheme, block)
    value = _load_secret_block(name, scheme, block)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str):
        if scheme in ("bearer", "api_key"):
            return Credentials(token=SecretStr(value), source=f"block:{block}")
        raise MissingCredentialsError(
            f"Secret block {block!r} holds a string, but the {scheme} scheme needs a JSON "
            "object with "
            + ("username/password" if scheme == "basic" else "client_id/client_secret"),
            service=name,
        )
    if not isinstance(value, dict):
        raise MissingCredentialsError(f"Secret block {block!r} has an unusable value", service=name)
    fields = {k: v for k, v in value.items() if isinstance(v, str)}
    creds = _from_settings(
        scheme,
        IntegrationConfig.model_construct(
            token=SecretStr(fields["token"]) if "token" in fields else None,
            username=fields.get("username"),
            password=SecretStr(fields["password"]) if "password" in fields else None,
            client_id=fields.get("client_id"),
            client_secret=SecretStr(fields["client_secret"]) if "client_secret" in fields else None,
        ),
    )
    if creds is None:
        raise MissingCredentialsError(
            f"Secret block {block!r} lacks the fields the {scheme} scheme needs", service=name
        )
    return Credentials(**{**creds.__dict__, "source": f"block:{block}"})


def resolve_credentials(
    spec: IntegrationSpec,
    cfg: IntegrationConfig,
    *,
    sandbox: bool,
    explicit: Credentials | None = None,
) -> Credentials:
    """Find the credentials of one integration.

    Args:
        spec: The catalog entry (gives the auth scheme).
        cfg: The integration's settings (env vars).
        sandbox: Whether the integration points at the Junction sandbox.
        explicit: Credentials passed by the caller; they win.

    Raises:
        MissingCredentialsError: Naming the env vars and the block setting to use.
    """
    scheme = spec.auth.scheme
    if scheme == "none":
        return Credentials(source="none")
    creds = explicit or _from_settings(scheme, cfg)
    if creds is None and cfg.secret_block:
        creds = _from_block(spec.name, scheme, cfg.secret_block)
    if creds is None and sandbox:
        creds = sandbox_credentials(scheme)
    if creds is None:
        if spec.transport == "smtp":
            return Credentials(source="none")  # SMTP relays often take no auth
        raise MissingCredentialsError(
            f"no credentials: set {_env_names(spec.name, scheme)}, or name a Prefect Secret "
            f"block in JUNCTION_{spec.name.upper()}_SECRET_BLOCK",
            service=spec.name,
        )
    register_credentials(spec.auth, creds)
    return creds


def basic_value(user: str, password: str) -> str:
    """The base64 of ``user:password`` that HTTP basic auth sends."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def register_credentials(auth: AuthSpec, creds: Credentials) -> None:
    """Register every secret of ``creds`` and each form it takes on the wire.

    Args:
        auth: The scheme, header and prefix the secrets are sent with.
        creds: The resolved credentials.
    """
    for secret in (creds.token, creds.password, creds.client_secret):
        if secret is not None:
            register_secret(secret.get_secret_value())
    if creds.token is not None:
        token = creds.token.get_secret_value()
        if auth.scheme == "bearer":
            register_secret(f"Bearer {token}")
        elif auth.prefix and not auth.query_param:
            register_secret(f"{auth.prefix}{token}")  # "SSWS ...", "Token token=..."
    for user, secret in ((creds.username, creds.password), (creds.client_id, creds.client_secret)):
        if user is not None and secret is not None:
            password = secret.get_secret_value()
            register_secret(f"{user}:{password}")  # and its base64, the basic header value
            register_secret(f"Basic {basic_value(user, password)}")
            register_secret(f"\x00{user}\x00{password}")  # and its base64: SMTP AUTH PLAIN


# --- httpx auth flows ---------------------------------------------------------------------


class HeaderAuth(httpx.Auth):
    """Static header auth: bearer, API-key header (with prefix) or API-key query param."""

    def __init__(self, spec: AuthSpec, token: SecretStr) -> None:
        self._spec = spec
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self._token.get_secret_value()
        if self._spec.query_param:
            request.url = request.url.copy_merge_params({self._spec.query_param: value})
        elif self._spec.scheme == "bearer":
            request.headers["Authorization"] = f"Bearer {value}"
        else:
            request.headers[self._spec.header] = f"{self._spec.prefix}{value}"
        yield request


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client-credentials grant with a cached token refreshed before expiry.

    The token is fetched on first use and again ``refresh_margin`` seconds before it
    expires; a 401 from the API forces one refresh and one replay of the request.
    """

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        *,
        scope: str | None = None,
        refresh_margin: float = 60.0,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._margin = refresh_margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # observable for tests: how many token requests were made

    def _token_request(self) -> httpx.Request:
        data = {"grant_type": "client_credentials"}
        if self._scope:
            data["scope"] = self._scope
        basic = basic_value(self._client_id, self._client_secret.get_secret_value())
        return httpx.Request(
            "POST",
            self.token_url,
            data=data,
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )

    def _store(self, response: httpx.Response) -> None:
        if response.status_code in (400, 401, 403):
            raise AuthenticationError(
                "OAuth2 token request rejected (check client id/secret and scope)",
                status_code=response.status_code,
                body_excerpt=response.text[:200],
            )
        if response.status_code >= 300:
            raise ConfigurationError(f"OAuth2 token endpoint answered HTTP {response.status_code}")
        try:
            body = response.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in", 3600))
            if not isinstance(token, str) or not token:
                raise TypeError("access_token is not a string")
        except (ValueError, KeyError, TypeError):
            raise MalformedResponseError(
                "OAuth2 token endpoint answered without a JSON access_token"
            ) from None
        if not math.isfinite(expires_in):
            expires_in = 3600.0
        register_secret(token)
        register_secret(f"Bearer {token}")
        self._token = token
        self._expires_at = time.monotonic() + expires_in
        self.fetches += 1

    def _fresh(self) -> bool:
        return self._token is not None and time.monotonic() < self._expires_at - self._margin

    def invalidate(self) -> None:
        """Forget the cached token (the next request fetches a new one)."""
        self._token = None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    response = yield self._token_request()
                    await response.aread()
                    self._store(response)
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            self.invalidate()
            async with self._lock:
                token_response = yield self._token_request()
                await token_response.aread()
                self._store(token_response)
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


def build_auth(
    spec: AuthSpec, creds: Credentials, *, token_url: str | None, scope: str | None
) -> httpx.Auth | None:
    """Build the ``httpx.Auth`` for a scheme from resolved credentials.

    Raises:
        ConfigurationError: If an OAuth2 integration has no token URL.
    """
    if spec.scheme in ("bearer", "api_key") and creds.token is not None:
        return HeaderAuth(spec, creds.token)
    if spec.scheme == "basic" and creds.username is not None and creds.password is not None:
        return httpx.BasicAuth(creds.username, creds.password.get_secret_value())
    if spec.scheme == "oauth2" and creds.client_id and creds.client_secret is not None:
        if not token_url:
            raise ConfigurationError("OAuth2 integration has no token URL configured")
        return OAuth2ClientCredentials(
            token_url, creds.client_id, creds.client_secret, scope=scope or spec.scope
        )
    return None
