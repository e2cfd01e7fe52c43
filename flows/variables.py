"""Non-secret settings from Prefect Variables: edit them in the Prefect UI, no redeploy.

A flow run is a new process started by a worker with the worker's environment; what an
operator changes between runs without touching a machine belongs in Prefect Variables
(credentials belong in Secret blocks: :mod:`deployments.blocks`). Each setting named in
:data:`VARIABLE_SETTINGS` can come from the Variable ``junction_<setting>`` (the
environment variable's name in lower case: ``junction_sandbox_url``,
``junction_integrations``, ``junction_analytics_report_days``,
``junction_analytics_forecast_horizon_days``).

Precedence: **environment > env file > Prefect Variable > default**. The environment (a
worker's, or a deployment's ``job_variables.env``) is what a machine or one deployment
needs and must win; the Variable is the server-wide value everyone shares; an empty
Variable counts as unset. ``make serve`` creates the Variables with the values in effect
(never overwriting one a user set); ``junction config`` shows ``prefect variable`` as the
source of a value that came from one.

Flows call :func:`apply_prefect_variables` first: it puts each Variable's value into this
process's environment (only where neither the environment nor the env file sets it) and
clears :func:`~junction.settings.get_settings`'s cache, so every layer of the run reads
the same settings. A Variable whose value does not validate is skipped with a warning
naming it; an unreachable server leaves the settings as they are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

import httpx
from pydantic import ValidationError

from junction.settings import Settings, env_file_values, get_settings

__all__ = [
    "VARIABLE_SETTINGS",
    "apply_prefect_variables",
    "apply_prefect_variables_sync",
    "apply_values",
    "ensure_variables",
    "read_variables",
    "variable_name",
    "variable_values",
]

VARIABLE_SETTINGS: tuple[str, ...] = (
    "sandbox_url",
    "integrations",
    "analytics_report_days",
    "analytics_forecast_horizon_days",
)
"""Settings a Prefect Variable may supply (non-secret, operator-tunable)."""

_log = logging.getLogger(__name__)


def variable_name(setting: str) -> str:
    """The Prefect Variable of ``setting`` (``sandbox_url`` -> ``junction_sandbox_url``)."""
    return f"junction_{setting}"


def _env_name(setting: str) -> str:
    return f"JUNCTION_{setting.upper()}"


def _validated(setting: str, value: Any) -> str:
    """``value`` checked against the setting's type and bounds, as environment text.

    Raises:
        ValueError: One line naming the Variable and what is wrong.
    """
    # One field validated as Settings would (type, bounds, field validators).
    target = Settings.model_construct()
    try:
        Settings.__pydantic_validator__.validate_assignment(target, setting, value)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ValueError(f"Prefect Variable {variable_name(setting)}={value!r}: {reason}") from None
    checked = getattr(target, setting)
    return str(checked)


def apply_values(
    values: Mapping[str, Any],
    environ: MutableMapping[str, str] | None = None,
    env_file: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Put Variable values into ``environ`` where neither it nor the env file sets them.

    Args:
        values: Variable values by setting name (``None`` or ``""``: unset).
        environ: The environment to fill (default: this process's).
        env_file: The env file's values (default: read it).

    Returns:
        What was applied: environment variable name -> value.
    """
    env = os.environ if environ is None else environ
    in_file = {k.upper() for k in (env_file_values() if env_file is None else env_file)}
    applied: dict[str, str] = {}
    for setting, value in values.items():
        name = _env_name(setting)
        if value is None or value == "" or name in env or name in in_file:
            continue
        try:
            env[name] = applied[name] = _validated(setting, value)
        except ValueError as exc:
            _logger().warning("%s; ignored", exc)
    return applied


def _ours(found: list[Any], settings: tuple[str, ...]) -> dict[str, Any]:
    by_name = {v.name: v.value for v in found}
    return {s: by_name[variable_name(s)] for s in settings if variable_name(s) in by_name}


async def read_variables(settings: tuple[str, ...] = VARIABLE_SETTINGS) -> dict[str, Any]:
    """The Prefect Variables of ``settings`` that exist on the server, by setting name
    (one API call: a flow run pays it once)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return _ours(await client.read_variables(), settings)


def variable_values(settings: tuple[str, ...] = VARIABLE_SETTINGS) -> dict[str, Any]:
    """:func:`read_variables` from synchronous code (``junction config``, sync flows)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return _ours(client.read_variables(), settings)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run's logger inside a flow run (its lines reach the UI), else the module's."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _log


def _in_flow_run() -> bool:
    """Inside a flow run: a flow's body called as a plain function (``.fn``: tests, the
    CLI) has no Prefect server to ask, and asking would start an ephemeral one."""
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def _finish(values: Mapping[str, Any], environ: MutableMapping[str, str] | None) -> dict[str, str]:
    applied = apply_values(values, environ)
    if applied:
        get_settings.cache_clear()
        _logger().info("settings from Prefect Variables: %s", ", ".join(sorted(applied)))
    return applied


async def apply_prefect_variables(
    environ: MutableMapping[str, str] | None = None,
) -> dict[str, str]:
    """Read the Variables and apply them to this process (see the module docstring).

    Args:
        environ: The environment to fill (default: this process's).

    Returns:
        What was applied: environment variable name -> value (empty when nothing was,
        outside a flow run, or when the Prefect API could not be reached).
    """
    if not _in_flow_run():
        return {}
    try:
        values = await read_variables()
    except (httpx.HTTPError, OSError) as exc:  # the server away must not stop a run
        _logger().warning("Prefect Variables not read (%s); settings unchanged", exc)
        return {}
    return _finish(values, environ)


def apply_prefect_variables_sync(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """:func:`apply_prefect_variables` for synchronous flows."""
    if not _in_flow_run():
        return {}
    try:
        values = variable_values()
    except (httpx.HTTPError, OSError) as exc:  # the server away must not stop a run
        _logger().warning("Prefect Variables not read (%s); settings unchanged", exc)
        return {}
    return _finish(values, environ)


def ensure_variables(
    api_url: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Create each missing Variable with the value in effect (``make serve``), so the UI
    lists them ready to edit; a Variable that exists is left as it is (a user's value).

    Args:
        api_url: The Prefect API (default: ``PREFECT_API_URL`` of this process).
        settings: Whose values to start from (default: this process's).

    Returns:
        The Variables created, by name.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.variables import Variable

    current = settings or get_settings()
    created: dict[str, Any] = {}
    with temporary_settings(updates={PREFECT_API_URL: api_url} if api_url else {}):
        existing = variable_values()
        for setting in VARIABLE_SETTINGS:
            if setting in existing:
                continue
            value = getattr(current, setting)
            Variable.set(variable_name(setting), value, tags=["junction"])
            created[variable_name(setting)] = value
    return created
