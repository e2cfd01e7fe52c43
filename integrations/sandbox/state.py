"""What a running sandbox remembers: each service's state, and a request log per route.

Both are shared between the server's event loop (the HTTP app and the SMTP server) and
other threads (the admin API's readers, a test holding ``SandboxServer.state``).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from integrations.sandbox.api import ServiceState

# --- state --------------------------------------------------------------------------------


class StateRegistry:
    """The state of every sandboxed service (``ServiceState`` per service, made on demand)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, ServiceState] = {}

    def get(self, service: str) -> ServiceState:
        """The state of ``service`` (created empty on first use)."""
        state = self._services.get(service)
        if state is None:
            with self._lock:
                state = self._services.setdefault(service, ServiceState(service))
        return state

    __getitem__ = get

    def collections(self, service: str) -> dict[str, dict[str, dict[str, Any]]]:
        """A deep copy of ``service``'s collections (safe to read from another thread)."""
        state = self.get(service)
        with state._lock:
            return copy.deepcopy(state.collections)

    def counts(self) -> dict[str, dict[str, int]]:
        """Objects per collection, per service that has any state."""
        with self._lock:
            services = dict(self._services)
        return {name: s.counts() for name, s in sorted(services.items()) if s.collections}

    def reset(self, service: str | None = None) -> None:
        """Forget the state of ``service`` (default: every service)."""
        with self._lock:
            targets = (
                list(self._services.values())
                if service is None
                else [s for n, s in self._services.items() if n == service]
            )
        for state in targets:
            state.reset()


# --- request log --------------------------------------------------------------------------


class RouteStats:
    """Counters of one service route: requests, injected faults by kind, statuses."""

    __slots__ = ("faults", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.faults: dict[str, int] = {}
        self.statuses: dict[str, int] = {}

    def fault(self, kind: str) -> None:
        """Count one injected fault of ``kind``."""
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def status(self, status: int | str) -> None:
        """Count one answer (an HTTP status, or ``reset``/``hang``/``disconnected``)."""
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1


class RequestLog:
    """Per service and route (``"GET /api/v1/users/{user_id}"``): how many requests came
    in and what was injected. Tests read it to count a client's attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, dict[str, RouteStats]] = {}
        self.synthetic = 0

    def start(self, service: str, route: str) -> RouteStats:
        """Count a request to ``service``/``route`` and return its counters."""
        routes = self._services.get(service)
        if routes is None:
            with self._lock:
                routes = self._services.setdefault(service, {})
        stats = routes.get(route)
        if stats is None:
            with self._lock:
                stats = routes.setdefault(route, RouteStats())
        stats.requests += 1
        return stats

    def summary(self, service: str | None = None) -> dict[str, Any]:
        """``{"services": {svc: {"requests", "faults", "routes": {route: {...}}}}}``."""
        with self._lock:
            items = [
                (n, dict(r)) for n, r in self._services.items() if service is None or n == service
            ]
        out: dict[str, Any] = {}
        for name, routes in sorted(items):
            total = 0
            faults: dict[str, int] = {}
            route_out: dict[str, Any] = {}
            for key, stats in sorted(routes.items()):
                f, st = dict(stats.faults), dict(stats.statuses)
                route_out[key] = {"requests": stats.requests, "faults": f, "statuses": st}
                total += stats.requests
                for kind, n in f.items():
                    faults[kind] = faults.get(kind, 0) + n
            out[name] = {"requests": total, "faults": faults, "routes": route_out}
        return {"services": out, "synthetic": {"requests": self.synthetic}}

    def count(self, service: str, route: str | None = None) -> int:
        """Requests to ``service`` (optionally one route key) so far."""
        routes = self._services.get(service, {})
        if route is not None:
            stats = routes.get(route)
            return stats.requests if stats else 0
        return sum(s.requests for s in list(routes.values()))

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._services.clear()
            self.synthetic = 0
