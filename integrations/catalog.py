"""The integration catalog: declarative data about every service Junction speaks to.

``catalog.yaml`` holds one entry per integration (name, capability tags, vendor base URL,
auth scheme, cheapest authenticated health check, status page, the capability actions
it provides). The shared engine in ``integrations.base`` turns an entry into a working
client; only services with typed actions have a module of their own (named in
``client``).

The catalog is the one registry of what an integration can do:

- ``capabilities``: tags for people and filters (``notify``, ``ticket``, ``hr``).
- ``provides``: the capability actions a workflow step can run on this integration
  without naming it (``notify.send`` -> Webex ``create_message``), with the mapping from
  the capability's generic inputs to the action's inputs. :meth:`Catalog.providers`
  lists the providers of one capability action in preference order (``rank``, then
  catalog order). A ``provides`` key's prefix must be one of the entry's tags.

The file is read with the one YAML loader (:mod:`integrations.yamlconfig`), so a bad
edit is reported as ``catalog.yaml:LINE: field: problem``.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from integrations.errors import UnknownCapabilityError, UnknownIntegrationError
from integrations.yamlconfig import ConfigModel, did_you_mean, load_model

AuthScheme = Literal["bearer", "api_key", "basic", "oauth2", "none"]

_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_IDENT = r"^[a-z][a-z0-9_]*$"
_CAPABILITY_ACTION = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


class AuthSpec(ConfigModel):
    """How a service authenticates requests.

    ``bearer`` sends ``Authorization: Bearer <token>``; ``api_key`` sends ``<header>:
    <prefix><token>`` (or a query parameter); ``basic`` sends HTTP basic auth;
    ``oauth2`` fetches a token with the client-credentials grant and sends it as bearer.
    """

    model_config = ConfigDict(frozen=True)

    scheme: AuthScheme
    header: str = "Authorization"
    prefix: str = ""
    query_param: str | None = None
    token_url: str | None = None
    scope: str | None = None


class HealthCheck(ConfigModel):
    """The cheapest authenticated request that proves the service works for us."""

    model_config = ConfigDict(frozen=True)

    method: Literal["GET", "POST", "EHLO"] = "GET"
    path: str = "/"
    params: dict[str, str] = Field(default_factory=dict)


class Provision(ConfigModel):
    """How an integration provides one capability action (a ``provides`` entry).

    Attributes:
        action: The integration's typed action that does it.
        inputs: Action input field -> generic input of the capability.
        list_inputs: Action fields that take a one-element list of the generic value.
        required: Generic inputs this provider cannot do without (a step that lacks one
            is not routed here).
        transform: Name of a transform the workflow layer applies to the generic
            inputs for fields a plain mapping cannot fill (``chat_messages``).
        rank: Preference among the capability's providers (lower first).
    """

    model_config = ConfigDict(frozen=True)

    action: str = Field(pattern=_IDENT)
    inputs: dict[str, str] = Field(default_factory=dict)
    list_inputs: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    transform: str | None = None
    rank: int = Field(100, ge=0)

    @model_validator(mode="after")
    def _lists_are_mapped(self) -> Provision:
        unmapped = [f for f in self.list_inputs if f not in self.inputs]
        if unmapped:
            raise ValueError(f"list_inputs {unmapped} are not keys of inputs")
        return self


class IntegrationSpec(ConfigModel):
    """One catalog entry."""

    model_config = ConfigDict(frozen=True)

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
    provides: dict[str, Provision] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"integration name {value!r} must be lower_snake_case")
        return value

    @field_validator("client")
    @classmethod
    def _client_module_exists(cls, value: str | None) -> str | None:
        if value is None:
            return value
        module, sep, attr = value.partition(":")
        if not sep or not attr.isidentifier():
            raise ValueError(f"client {value!r} must be 'package.module:ClassName'")
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            # Finds the files, imports nothing but the parent packages (a name whose parent
            # is missing would make find_spec raise, so parents are looked up first).
            if importlib.util.find_spec(".".join(parts[:i])) is None:
                raise ValueError(f"no module {module!r}")
        return value

    @field_validator("provides")
    @classmethod
    def _capability_actions(cls, value: dict[str, Provision]) -> dict[str, Provision]:
        for key in value:
            if not re.fullmatch(_CAPABILITY_ACTION, key):
                raise ValueError(f"{key!r} is not a capability action ('notify.send')")
        return value

    @model_validator(mode="after")
    def _provides_tagged(self) -> IntegrationSpec:
        untagged = sorted(k for k in self.provides if k.partition(".")[0] not in self.capabilities)
        if untagged:
            raise ValueError(
                f"provides {', '.join(untagged)} but capabilities lacks "
                f"{', '.join(sorted({k.partition('.')[0] for k in untagged}))}"
            )
        return self

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


class CatalogFile(ConfigModel):
    """The whole ``catalog.yaml``."""

    integrations: list[IntegrationSpec] = Field(min_length=1)

    @field_validator("integrations")
    @classmethod
    def _unique_names(cls, value: list[IntegrationSpec]) -> list[IntegrationSpec]:
        seen: set[str] = set()
        for spec in value:
            if spec.name in seen:
                raise ValueError(f"integration {spec.name!r} is listed twice")
            seen.add(spec.name)
        return value


@dataclass(frozen=True)
class Provider:
    """One integration's way of running a capability action.

    Attributes:
        integration: Catalog name.
        capability: The capability action (``notify.send``).
        provision: The action, the input mapping, the required inputs.
    """

    integration: str
    capability: str
    provision: Provision

    @property
    def action(self) -> str:
        """The integration's action name."""
        return self.provision.action


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

    @property
    def capabilities(self) -> list[str]:
        """Every capability tag (``notify``) and capability action (``notify.send``), sorted."""
        tags = {t for s in self for t in s.capabilities}
        return sorted(tags | set(self.capability_actions))

    @property
    def capability_actions(self) -> list[str]:
        """Every capability action some integration provides, sorted."""
        return sorted({k for s in self for k in s.provides})

    def check_capability(self, capability: str) -> str:
        """Return ``capability`` if some entry has it (a tag or a capability action).

        Raises:
            UnknownCapabilityError: One line, with the closest names and the known ones.
        """
        known = self.capabilities
        if capability in known:
            return capability
        hint = did_you_mean(capability, known, n=3)
        raise UnknownCapabilityError(
            f"unknown capability {capability!r}{hint}; known: {', '.join(known)}"
        )

    def with_capability(self, capability: str) -> list[IntegrationSpec]:
        """Entries tagged ``capability`` or providing it (``notify`` or ``notify.send``).

        Raises:
            UnknownCapabilityError: No entry has it.
        """
        self.check_capability(capability)
        return [s for s in self if capability in s.capabilities or capability in s.provides]

    def providers(self, capability: str) -> list[Provider]:
        """The providers of a capability action, in preference order (rank, catalog order).

        Args:
            capability: ``<capability>.<verb>`` (``notify.send``).

        Raises:
            UnknownCapabilityError: No integration provides it.
        """
        found = [
            (spec.provides[capability].rank, index, spec.name)
            for index, spec in enumerate(self)
            if capability in spec.provides
        ]
        if not found:
            known = self.capability_actions
            hint = did_you_mean(capability, known, n=3)
            raise UnknownCapabilityError(
                f"no integration provides {capability!r}{hint}; known: {', '.join(known)}"
            )
        return [
            Provider(name, capability, self._specs[name].provides[capability])
            for _, _, name in sorted(found)
        ]


def catalog_path() -> Path:
    """The packaged ``catalog.yaml``."""
    return Path(str(resources.files("integrations").joinpath("catalog.yaml")))


def read_catalog(path: str | Path, *, text: str | None = None) -> Catalog:
    """Read a catalog file (or ``text``, shown as ``path`` in errors).

    Raises:
        ConfigError: Every problem, as ``catalog.yaml:LINE: field: problem``.
    """
    return Catalog(load_model(CatalogFile, path, text=text).integrations)


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """Load the packaged ``catalog.yaml`` (cached)."""
    return read_catalog(catalog_path())
