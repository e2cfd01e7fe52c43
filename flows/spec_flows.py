"""One Prefect flow per workflow spec, its signature the spec's typed parameters.

The generic ``workflow`` flow (:func:`flows.workflow.run_workflow`) takes a spec name and
an untyped ``params`` dict, so Prefect's UI shows a free-text form and validates nothing.
Here each spec, the built-in ones and those of the user's spec folder
(``JUNCTION_ANALYTICS_SPEC_DIR``, else ``<JUNCTION_HOME>/specs``; a user spec with a
built-in's name replaces it), becomes a flow named after it whose parameters are the
spec's: ``string`` -> ``str``, ``integer`` -> ``int``, ``number`` -> ``float``,
``boolean`` -> ``bool``, ``array`` -> ``list``, ``object`` -> ``dict``, an ``enum`` a
``Literal``, descriptions and defaults as declared. Prefect derives the deployment's
parameter schema from that signature (the UI's form) and the server refuses a run whose
parameters do not fit it at submission; the flow validates them again when it starts.

A spec flow runs the same body as the generic flow (the runner, steps as task runs, the
flow run's id as the workflow run's id, the feature flags), so a run is the same record
whichever flow started it. Each flow is an attribute of this module named after the spec,
which is what a deployment's entrypoint names: ``flows/spec_flows.py:employee_onboarding``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from prefect import Flow, flow
from prefect.states import State

from flows.workflow import run_workflow
from junction.settings import Settings, get_settings
from junction.workflows.builtins import builtin_specs
from junction.workflows.spec import Parameter, ParamType, WorkflowSpec
from junction.workflows.validate import SpecInvalid, load_workflow

__all__ = ["SPECS", "SPEC_FLOWS", "build_flow", "spec_files", "user_spec_dir"]

log = logging.getLogger(__name__)

_TYPES: dict[ParamType, Any] = {
    ParamType.STRING: str,
    ParamType.INTEGER: int,
    ParamType.NUMBER: float,
    ParamType.BOOLEAN: bool,
    ParamType.ARRAY: list[Any],
    ParamType.OBJECT: dict[str, Any],
}


def user_spec_dir(settings: Settings) -> Path:
    """The user's spec folder: ``JUNCTION_ANALYTICS_SPEC_DIR``, else ``<home>/specs``."""
    return settings.analytics_spec_dir or settings.home / "specs"


def spec_files(settings: Settings) -> list[Path]:
    """Every spec file to deploy: the built-ins, then the user's folder's ``*.yaml`` and
    ``*.yml`` (a later spec of the same name replaces an earlier one)."""
    found = list(builtin_specs().values())
    folder = user_spec_dir(settings)
    if folder.is_dir():
        found += sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return found


def _annotation(param: Parameter) -> Any:
    kind: Any = _TYPES[param.type]
    if param.type is ParamType.ARRAY and isinstance(param.default, list) and param.default:
        # A list of strings shows as one: the items' type is the default's, when uniform.
        item_types = {type(item) for item in param.default}
        if len(item_types) == 1 and item_types <= {str, int, float, bool}:
            kind = list[item_types.pop()]  # type: ignore[misc]
    if param.enum:
        kind = Literal.__getitem__(tuple(param.enum))
    # An optional parameter without a default may be left out: None then.
    return kind if param.is_required or param.default is not None else kind | None


def _docstring(spec: WorkflowSpec) -> str:
    """Google style, so Prefect's schema carries each parameter's description."""
    lines = [spec.description or f"Run the {spec.name} workflow.", ""]
    if spec.parameters:
        lines.append("Args:")
        for name, param in spec.parameters.items():
            text = " ".join(param.description.split()) or f"{param.type.value} parameter"
            lines.append(f"    {name}: {text}")
    return "\n".join(lines)


def build_flow(spec: WorkflowSpec, path: Path) -> Flow[..., Coroutine[Any, Any, State[Any]]]:
    """The flow of ``spec`` (read from ``path``): its parameters typed as the spec's.

    Args:
        spec: The validated spec.
        path: Its file (the flow loads it again at each run: a changed file is seen).
    """
    source = str(path)

    async def body(**params: Any) -> State[Any]:
        # Parameters Prefect left out (optional, no default) reach the runner as absent.
        given = {k: v for k, v in params.items() if v is not None}
        result: State[Any] = await run_workflow.fn(source, given)
        return result

    signature = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty
            if param.is_required
            else (None if param.default is None else param.default),
            annotation=_annotation(param),
        )
        for name, param in spec.parameters.items()
    ]
    fn: Callable[..., Coroutine[Any, Any, State[Any]]] = body
    fn.__name__ = fn.__qualname__ = spec.name
    fn.__doc__ = _docstring(spec)
    fn.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in signature}
    return flow(
        name=spec.name,
        description=spec.description or None,
        validate_parameters=True,
        log_prints=False,
    )(fn)


def _load_all() -> dict[str, tuple[WorkflowSpec, Path]]:
    specs: dict[str, tuple[WorkflowSpec, Path]] = {}
    for path in spec_files(get_settings()):
        try:
            spec = load_workflow(path)
        except (SpecInvalid, OSError) as exc:
            # One broken user spec must not take the other deployments down with it.
            log.warning("spec %s skipped: %s", path, str(exc).splitlines()[0])
            continue
        if spec.name in _RESERVED:
            log.warning("spec %s skipped: its name %r is taken in %s", path, spec.name, __name__)
            continue
        specs[spec.name] = (spec, path)
    return specs


_RESERVED = frozenset(globals())
"""This module's own names: a spec may not shadow them (its flow is a module attribute)."""

SPECS = _load_all()
"""Every spec with a flow, by name: the spec and its file (read when the module is imported)."""

SPEC_FLOWS = {name: build_flow(spec, path) for name, (spec, path) in SPECS.items()}
"""Every spec's flow, by spec name."""

globals().update(SPEC_FLOWS)
