"""A deployment per workflow spec, generated from the spec (``python -m deployments.specs``).

Every built-in spec and every spec in the user's spec folder (``JUNCTION_ANALYTICS_SPEC_DIR``,
else ``<JUNCTION_HOME>/specs``) gets a deployment named after it, of its flow in
:mod:`flows.spec_flows`, so the Prefect UI shows a real form for it (types, defaults,
descriptions, enums from the spec's parameters) and the server refuses a run whose
parameters do not fit at submission (``enforce_parameter_schema``). Tags: ``junction``,
``kind:workflow``, ``source:builtin`` or ``source:user``, and ``integration:<name>`` per
integration the workflow may call (Prefect's filters and automations select on them).

Run it after adding or changing a spec (``make serve`` does): each deployment is created
or updated in place (same name, same id); runs are on demand (no schedule). Like
``prefect.yaml``'s entries, the deployments use the ``junction-process`` pool and a pull
step that moves the flow run to this checkout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast
from uuid import UUID

from deployments.local import ROOT, WORK_POOL

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

ENTRYPOINT_FILE = "flows/spec_flows.py"


@dataclass(frozen=True)
class SpecDeployment:
    """What one spec's deployment will be.

    Attributes:
        name: The spec's name: the flow's and the deployment's.
        path: The spec file.
        tags: Its tags (kind, source, integrations).
        description: The spec's description.
    """

    name: str
    path: Path
    tags: tuple[str, ...]
    description: str

    @property
    def entrypoint(self) -> str:
        """The flow in :mod:`flows.spec_flows` the worker loads."""
        return f"{ENTRYPOINT_FILE}:{self.name}"

    @property
    def full_name(self) -> str:
        """``<flow>/<deployment>``, as ``prefect deployment run`` takes it."""
        return f"{self.name}/{self.name}"


def planned() -> list[SpecDeployment]:
    """The deployment of each spec :mod:`flows.spec_flows` has a flow for, sorted by name."""
    # Function-level: importing the flows imports Prefect and the runner (~3 s).
    from flows.spec_flows import SPECS
    from junction.features import spec_integrations
    from junction.workflows.builtins import builtin_spec_dir

    out = []
    for name, (spec, path) in sorted(SPECS.items()):
        source = "builtin" if path.parent.resolve() == builtin_spec_dir() else "user"
        tags = (
            "junction",
            "kind:workflow",
            f"source:{source}",
            *(f"integration:{s}" for s in spec_integrations(spec)),
        )
        out.append(SpecDeployment(name, path, tags, spec.description))
    return out


def runner_deployment(plan: SpecDeployment, pool: str = WORK_POOL) -> RunnerDeployment:
    """The Prefect deployment of ``plan``, its schema from the spec's flow."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.runner.storage import LocalStorage

    from flows.spec_flows import SPEC_FLOWS

    deployment = RunnerDeployment.from_flow(
        SPEC_FLOWS[plan.name],
        name=plan.name,
        description=plan.description or None,
        tags=list(plan.tags),
        work_pool_name=pool,
        enforce_parameter_schema=True,
    )
    # What Flow.from_source(<this checkout>) would give, without importing the flows'
    # module again per spec: the worker loads the flow by its entrypoint in this checkout
    # (the pull step moves the run there, as prefect.yaml's entries do).
    deployment.entrypoint = plan.entrypoint
    deployment.storage = LocalStorage(str(ROOT))
    return deployment


def deploy_specs(pool: str = WORK_POOL) -> dict[str, UUID]:
    """Create or update every spec's deployment on the configured Prefect server.

    Args:
        pool: The work pool (it must exist: :func:`deployments.local.ensure_work_pool`).

    Returns:
        Each deployment's id, by ``<flow>/<deployment>`` name.
    """
    out: dict[str, UUID] = {}
    for plan in planned():
        # Called from synchronous code, Prefect's sync/async `apply` returns the id itself.
        applied = runner_deployment(plan, pool).apply(work_pool_name=pool)
        out[plan.full_name] = cast(UUID, applied)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deployments.specs [--pool NAME] [--list]``."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.specs",
        description="Deploy every workflow spec (built-in and the user's folder) as a typed "
        "Prefect deployment on PREFECT_API_URL's server.",
    )
    parser.add_argument("--pool", default=WORK_POOL, help="work pool name")
    parser.add_argument("--list", action="store_true", help="show the plan, deploy nothing")
    args = parser.parse_args(argv)
    if args.list:
        for plan in planned():
            print(f"{plan.full_name}\t{plan.path}\t{','.join(plan.tags)}")
        return 0
    for full_name, deployment_id in deploy_specs(args.pool).items():
        print(f"deployed {full_name} ({deployment_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
