"""Where a sandbox request goes: one mount per HTTP catalog entry, holding its vendor
module's routes and the generic answer to its catalog health check.

Each HTTP catalog entry is mounted at ``/<name><vendor base path>`` (OpenAI at
``/openai/v1``, Okta at ``/okta``: exactly ``IntegrationSpec.sandbox_base_url``). Vendor
modules are every module of ``integrations.sandbox.vendors`` that defines ``routes:
VendorRoutes``; they are part of the sandbox, so one that fails to import stops it.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import compile_path

from integrations.catalog import Catalog, IntegrationSpec
from integrations.sandbox import auth as sandbox_auth
from integrations.sandbox import vendors
from integrations.sandbox.api import Handler, VendorRoutes

VENDORS_PACKAGE = vendors.__name__


@dataclass
class CompiledRoute:
    """One route of a mount, its path compiled (Starlette's syntax)."""

    method: str
    path: str
    regex: re.Pattern[str]
    convertors: dict[str, Any]
    handler: Handler | None  # None = the generic health answer
    public: bool = False
    key: str = ""

    def __post_init__(self) -> None:
        self.key = f"{self.method} {self.path}"


@dataclass
class Mount:
    """One sandboxed HTTP service: its catalog entry, path prefix and routes."""

    spec: IntegrationSpec
    prefix: str
    token_path: str | None
    routes: list[CompiledRoute] = field(default_factory=list)
    vendor: VendorRoutes | None = None

    @property
    def name(self) -> str:
        """The catalog name."""
        return self.spec.name

    def add(
        self,
        method: str,
        path: str,
        handler: Handler | None,
        *,
        first: bool = False,
        public: bool = False,
    ) -> None:
        """Add a route (``first``: ahead of the others)."""
        regex, _fmt, convertors = compile_path(path)
        route = CompiledRoute(method.upper(), path, regex, convertors, handler, public)
        if first:
            self.routes.insert(0, route)
        else:
            self.routes.append(route)

    def match(self, method: str, rest: str) -> tuple[CompiledRoute | None, dict[str, Any], bool]:
        """``(route, path_params, path_exists_for_another_method)``."""
        candidates = [rest]
        if rest != "/":
            candidates.append(rest[:-1] if rest.endswith("/") else rest + "/")
        other_method = False
        for path in candidates:
            for route in self.routes:
                m = route.regex.match(path)
                if m is None:
                    continue
                if route.method != method and not (route.method == "GET" and method == "HEAD"):
                    other_method = True
                    continue
                params = {k: route.convertors[k].convert(v) for k, v in m.groupdict().items()}
                return route, params, False
        return None, {}, other_method


def discover_vendor_routes() -> list[VendorRoutes]:
    """Import every module of ``integrations.sandbox.vendors`` and collect its ``routes``.

    Raises:
        Exception: Whatever a vendor module raises on import (it is a bug to fix).
    """
    found: list[VendorRoutes] = []
    for info in sorted(pkgutil.iter_modules(vendors.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{VENDORS_PACKAGE}.{info.name}")
        routes = getattr(module, "routes", None)
        if isinstance(routes, VendorRoutes):
            found.append(routes)
    return found


def build_mounts(catalog: Catalog) -> dict[str, Mount]:
    """A mount per HTTP catalog entry, with its vendor module's routes and, where the
    module does not play it, the generic answer to the catalog health check.

    Raises:
        ValueError: A vendor module names a service that is not an HTTP catalog entry.
    """
    mounts: dict[str, Mount] = {}
    for spec in catalog:
        if spec.transport != "http":
            continue
        prefix = urlsplit(spec.sandbox_base_url("http://sandbox")).path.rstrip("/")
        token_path = (
            f"/{spec.name}{sandbox_auth.TOKEN_PATH}" if spec.auth.scheme == "oauth2" else None
        )
        mounts[spec.name] = Mount(spec, prefix, token_path)
    for routes in discover_vendor_routes():
        mount = mounts.get(routes.service)
        if mount is None:
            raise ValueError(
                f"sandbox vendor module for {routes.service!r}: no such HTTP catalog entry"
            )
        mount.vendor = routes
        for r in routes.routes:
            mount.add(r.method, r.path, r.handler, public=r.public)
    for mount in mounts.values():
        health = mount.spec.health
        probe = re.sub(r"\{[^}]+\}", "x", health.path)
        route, _, _ = mount.match(health.method, probe)
        if route is None:
            mount.add(health.method, health.path, None)
    return mounts
