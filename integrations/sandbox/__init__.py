"""Junction's sandbox: a local server that plays every catalog integration, with state
and scriptable faults (see :mod:`integrations.sandbox.app`).

Imports are lazy so that vendor modules importing :mod:`integrations.sandbox.api` do not
pull in uvicorn and the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer, build_app, serve
    from integrations.sandbox.faults import FaultProfile, ProfileError, ServiceFaults

__all__ = ["FaultProfile", "ProfileError", "SandboxServer", "ServiceFaults", "build_app", "serve"]

_WHERE = {
    "SandboxServer": "integrations.sandbox.app",
    "build_app": "integrations.sandbox.app",
    "serve": "integrations.sandbox.app",
    "FaultProfile": "integrations.sandbox.faults",
    "ProfileError": "integrations.sandbox.faults",
    "ServiceFaults": "integrations.sandbox.faults",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
