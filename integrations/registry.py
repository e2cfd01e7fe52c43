"""Build a client for any catalog integration by name."""

from __future__ import annotations

import importlib
from typing import Any

from integrations.actions import ActionSpec
from integrations.base import IntegrationClient
from integrations.catalog import IntegrationSpec, load_catalog
from integrations.errors import ConfigurationError, UnknownActionError


def client_class(spec: IntegrationSpec) -> type[IntegrationClient]:
    """The client class of a catalog entry: its typed module's, or the generic engine."""
    if not spec.client:
        return IntegrationClient
    # The catalog checked that the module exists; an error inside it is a bug to see.
    module_name, _, attr = spec.client.partition(":")
    cls = getattr(importlib.import_module(module_name), attr, None)
    if not (isinstance(cls, type) and issubclass(cls, IntegrationClient)):
        raise ConfigurationError(f"{spec.client} is not an IntegrationClient", service=spec.name)
    return cls


def get_client(name: str, **kwargs: Any) -> IntegrationClient:
    """Create the client of integration ``name``.

    Args:
        name: Catalog name (``okta``).
        **kwargs: Passed to :class:`IntegrationClient` (``config``, ``engine``,
            ``base_url``, ``http``, ``credentials``, ``source``...); without ``config``
            and ``engine`` the client talks to the sandbox at its default address.

    Raises:
        UnknownIntegrationError: No such integration (with suggestions).
        ConfigurationError: Bad base URL or missing credentials (nothing is sent).
    """
    spec = load_catalog().get(name)
    return client_class(spec)(spec, **kwargs)


def get_action(name: str, action: str) -> ActionSpec:
    """Look up ``<integration>.<action>`` without building a client.

    Raises:
        UnknownIntegrationError: No such integration.
        UnknownActionError: The integration has no such action (lists the ones it has).
    """
    spec = load_catalog().get(name)
    actions = client_class(spec).actions()
    if action not in actions:
        known = ", ".join(sorted(actions)) or "none besides health_check"
        raise UnknownActionError(f"unknown action {action!r}; {name} has: {known}", service=name)
    return actions[action]
