"""The integration catalog: declarative data about every service Junction speaks to.

``catalog.yaml`` holds one entry per integration (name, capabilities, vendor base URL,
auth scheme, cheapest authenticated health check, status page). The shared engine in
``integrations.base`` turns an entry into a working client; only services with typed
actions have a module of their own (named in ``client``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.errors import UnknownIntegrationError

AuthScheme = Literal["bearer", "api_key", "basic", "oauth2", "none"]

_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


class AuthSpec(BaseModel):
    """How a service authenticates requests.

    ``bearer`` sends ``Authorization: Bearer <token>``; ``api_key`` sends ``<header>:
    <prefix><token>`` (or a query parameter); ``basic`` sends HTTP basic auth;
    ``oauth2`` fetches a token with the client-credentials grant and sends it as bearer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: AuthScheme
    header: str = "Authorization"
    prefix: str = ""
    query_param: str | None = None
    token_url: str | None = None
    scope: str | None = None


class HealthCheck(BaseModel):
    """The cheapest authenticated request that proves the service works for us."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["GET", "POST", "EHLO"] = "GET"
    path: str = "/"
    params: dict[str, str] = Field(default_factory=dict)


class IntegrationSpec(BaseModel):
    """One catalog entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    capabilities: tuple[str, ...]
    base_url: str
    auth: AuthSpec
    health: HealthCheck
    transport: Literal["http", "smtp"] = "http"
    headers: dict[str, str] = Field(default_factory=dict)
    idempotency_header: str | None = None
    status_page: str | None = None
    spec: str | None = None
    client: str | None = None
    docs: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"integration name {value!r} must be lower_snake_case")
        return value

    @property
    def placeholders(self) -> list[str]:
        """Placeholders the user fills in the vendor base URL (``{yourOktaDomain}``)."""
        return _PLACEHOLDER.findall(self.base_url)

    def sandbox_base_url(self, sandbox_url: str) -> str:
        """Base URL of this service inside the Junction sandbox.

        The vendor's own base path is kept (``/v1`` for OpenAI, ``/api`` for Slack) so
        that clients build exactly the paths they build against the real service.
        """
        if self.transport == "smtp":
            host = urlsplit(sandbox_url).hostname or "127.0.0.1"
            return f"smtp://{host}"
        path = urlsplit(_PLACEHOLDER.sub(r"\1", self.base_url)).path.rstrip("/")
        return f"{sandbox_url.rstrip('/')}/{self.name}{path}"


class Catalog:
    """All catalog entries, by name, in file order."""

    def __init__(self, specs: list[IntegrationSpec]) -> None:
        self._specs = {s.name: s for s in specs}
        if len(self._specs) != len(specs):
            raise ValueError("duplicate integration names in catalog")

    def __iter__(self) -> Iterator[IntegrationSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    @property
    def names(self) -> list[str]:
        """Every integration name, in catalog order."""
        return list(self._specs)

    def get(self, name: str) -> IntegrationSpec:
        """Return the entry called ``name``.

        Raises:
            UnknownIntegrationError: With the closest names as suggestions.
        """
        try:
            return self._specs[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._specs, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownIntegrationError(
                f"unknown integration {name!r}.{hint} "
                "Run `junction integrations list` to see all names."
            ) from None

    def with_capability(self, capability: str) -> list[IntegrationSpec]:
        """Entries offering ``capability`` (``notify``, ``ticket``...), in catalog order."""
        return [s for s in self._specs.values() if capability in s.capabilities]


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """Load the packaged ``catalog.yaml`` (cached)."""
    text = resources.files("integrations").joinpath("catalog.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    return Catalog([IntegrationSpec.model_validate(item) for item in data["integrations"]])
