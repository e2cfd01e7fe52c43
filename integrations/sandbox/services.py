"""The sandbox side of each catalog integration, as data: ``services.yaml``.

Per service: the body of its catalog health check, the shape of its error bodies, its
usual error messages and its rate-limit headers (the file's header explains the
templates). A catalog-only integration needs nothing else from the sandbox; a service
with a vendor module (``integrations/sandbox/vendors/<name>.py``) takes its error shape
and headers from here too. The file is loaded once, through the one YAML loader, and
every template is checked then, so a mistake is a ``file:line: field: problem`` at
start-up rather than a broken answer later.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from integrations.catalog import load_catalog
from integrations.yamlconfig import ConfigModel, did_you_mean, load_model

SERVICES_FILE = Path(__file__).resolve().parent / "services.yaml"
"""Where the per-service data lives."""

RateLimitStyle = Literal["x-ratelimit", "github", "gitlab", "okta", "openai"]

STATUS_SWITCH = "$status"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_STATUS_KEY = re.compile(r"[1-5]\d\d|[1-5]xx|default")
_HEALTH_VARS = frozenset({"principal", "user.id", "user.name", "user.email"})
_ERROR_VARS = frozenset(
    {"message", "status", "status_text", "reason", "reason_code", "REASON_CODE"}
)

SANDBOX_USER_RECORD = {
    "user.id": "sandbox-user-1",
    "user.name": "Sandbox User",
    "user.email": "sandbox-user@example.com",
}
"""The user every generic health answer describes."""

_GENERIC_HEALTH: Any = {"id": "{{user.id}}", "name": "{{user.name}}", "login": "{{principal}}"}
_GENERIC_ERROR: Any = {"message": "{{message}}"}


def _status_key(value: Any) -> str:
    key = str(value)
    if isinstance(value, bool) or not _STATUS_KEY.fullmatch(key):
        raise ValueError(f"{value!r} is not a status key (a status such as 401, 5xx or default)")
    return key


StatusKey = Annotated[str, BeforeValidator(_status_key)]


def _check_template(
    value: Any, allowed: frozenset[str], where: str, *, path_params: bool = False
) -> Any:
    """``value`` with mapping keys as text; raises ``ValueError`` naming a bad placeholder
    or ``$status`` switch. ``path_params`` allows ``{{path.NAME}}``."""
    if isinstance(value, Mapping):
        if STATUS_SWITCH in value:
            choices = value[STATUS_SWITCH]
            if len(value) != 1 or not isinstance(choices, Mapping):
                raise ValueError(
                    f"{where}: {STATUS_SWITCH} must be the only key, over a mapping of "
                    "status -> value"
                )
            return {
                STATUS_SWITCH: {
                    _status_key(k): _check_template(
                        v, allowed, f"{where}.{k}", path_params=path_params
                    )
                    for k, v in choices.items()
                }
            }
        return {
            str(k): _check_template(v, allowed, f"{where}.{k}", path_params=path_params)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _check_template(v, allowed, f"{where}.{i}", path_params=path_params)
            for i, v in enumerate(value)
        ]
    if isinstance(value, str):
        for name in _PLACEHOLDER.findall(value):
            if name not in allowed and not (path_params and re.fullmatch(r"path\.\w+", name)):
                known = ", ".join(sorted(allowed))
                raise ValueError(f"{where}: unknown placeholder {{{{{name}}}}} (known: {known})")
    return value


class ServiceEntry(ConfigModel):
    """The sandbox's data for one service (every field optional)."""

    health: Any = Field(None, description="Body of the catalog health check (a template).")
    error: Any = Field(None, description="The vendor's error body (a template).")
    messages: dict[StatusKey, str] = Field(
        default_factory=dict, description="Usual error message per status (401, 5xx, default)."
    )
    rate_limit_headers: RateLimitStyle = "x-ratelimit"

    @field_validator("health")
    @classmethod
    def _health_template(cls, value: Any) -> Any:
        return _check_template(value, _HEALTH_VARS, "health", path_params=True)

    @field_validator("error")
    @classmethod
    def _error_template(cls, value: Any) -> Any:
        return _check_template(value, _ERROR_VARS, "error")


class SandboxServices(ConfigModel):
    """The whole ``services.yaml``."""

    services: dict[str, ServiceEntry]

    @field_validator("services", mode="before")
    @classmethod
    def _catalog_names(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            names = load_catalog().names
            for name in value:
                if name not in names:
                    raise ValueError(f"{name!r} is not in the catalog{did_you_mean(name, names)}")
        return value

    def entry(self, service: str) -> ServiceEntry:
        """The entry of ``service`` (all defaults when it has none)."""
        return self.services.get(service) or _DEFAULT_ENTRY


_DEFAULT_ENTRY = ServiceEntry()


@functools.cache
def sandbox_services() -> SandboxServices:
    """``services.yaml``, loaded and checked once.

    Raises:
        integrations.yamlconfig.ConfigError: The file is invalid (each problem located).
    """
    return load_model(SandboxServices, SERVICES_FILE)


# --- rendering ------------------------------------------------------------------------------


def _pick(choices: Mapping[str, Any], status: int) -> Any:
    for key in (str(status), f"{status // 100}xx", "default"):
        if key in choices:
            return choices[key]
    return None


def render(template: Any, values: Mapping[str, Any], status: int = 0) -> Any:
    """Fill a template: placeholders from ``values``, ``$status`` switches by ``status``.

    A string that is exactly one placeholder takes the value as it is (a number stays a
    number); elsewhere values are written as text. An unknown ``path.*`` placeholder
    renders empty.
    """
    if isinstance(template, dict):
        if STATUS_SWITCH in template:
            return render(_pick(template[STATUS_SWITCH], status), values, status)
        return {k: render(v, values, status) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values, status) for v in template]
    if isinstance(template, str) and "{{" in template:
        whole = _PLACEHOLDER.fullmatch(template)
        if whole is not None:
            return values.get(whole.group(1), "")
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), template)
    return template


def reason(status: int) -> str:
    """The HTTP reason phrase of ``status`` (``"Error"`` for a status without one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def vendor_error_body(service: str, status: int, message: str | None = None) -> Any:
    """The body ``service`` really answers for an HTTP ``status`` error.

    Used by the sandbox app (auth failures, injected faults, unknown paths) and by vendor
    modules (``raise VendorError(404, vendor_error_body("okta", 404))``, or
    :func:`integrations.sandbox.api.vendor_error`).

    Args:
        service: Catalog name (one without an entry gets ``{"message": ...}``).
        status: The HTTP status of the error.
        message: The human message (Slack: the error code); default: the vendor's usual
            wording for the status, else the HTTP reason phrase.
    """
    entry = sandbox_services().entry(service)
    phrase = reason(status)
    msg = message or _pick(entry.messages, status) or phrase
    code = phrase.replace(" ", "_")
    values = {
        "message": msg,
        "status": status,
        "status_text": str(status),
        "reason": phrase,
        "reason_code": code.lower(),
        "REASON_CODE": code.upper(),
    }
    return render(entry.error if entry.error is not None else _GENERIC_ERROR, values, status)


@functools.lru_cache(maxsize=512)
def health_json(service: str, params: tuple[tuple[str, Any], ...], principal: str) -> bytes:
    """The encoded body of ``service``'s catalog health check (cached: sweeps hammer it).

    Args:
        service: Catalog name.
        params: The health path's parameters, as sorted ``(name, value)`` pairs.
        principal: The authenticated user or token name.
    """
    entry = sandbox_services().entry(service)
    values: dict[str, Any] = {"principal": principal, **SANDBOX_USER_RECORD}
    values.update((f"path.{k}", v) for k, v in params)
    template = entry.health if entry.health is not None else _GENERIC_HEALTH
    return json.dumps(render(template, values)).encode()


def rate_limit_style(service: str) -> RateLimitStyle:
    """Which rate-limit headers ``service`` sends."""
    return sandbox_services().entry(service).rate_limit_headers
