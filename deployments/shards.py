"""One monitoring deployment per monitor shard (``python -m deployments.shards``).

With ``JUNCTION_MONITOR_SHARDS`` = ``n`` above 1, the integrations are split between ``n``
monitor runs, each owning a stable part (rendezvous hashing of the names,
:func:`integrations.sweep.owned_by`). This module deploys ``n`` deployments
``monitor-continuous-shard-<i>-of-<n>`` of the monitor-continuous flow (parameters
``shard``/``shards``; like ``prefect.yaml``'s ``monitor-continuous``: hourly runs, each
sweeping every 5 s for an hour, concurrency limit 1 per shard) and pauses the unsharded
``monitor-continuous`` deployment, so every integration is monitored exactly once. Shard
deployments of another shard count (an earlier setting) are deleted. With ``n`` = 1 any
shard deployments are deleted and ``monitor-continuous`` is resumed: the single monitor.

``make serve`` runs it after ``prefect deploy --all``; run it again after changing
``JUNCTION_MONITOR_SHARDS``. The runs of all shards share the one alert database, which
serializes their evaluations; each worker runs any shard's run (the pool decides where).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from deployments.local import ROOT, WORK_POOL

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

ENTRYPOINT = "flows/monitor_loop.py:monitor_continuous"
FLOW_NAME = "monitor-continuous"
UNSHARDED = "monitor-continuous"
"""``prefect.yaml``'s deployment of the flow (every integration in one run)."""
PREFIX = "monitor-continuous-shard-"
RUN_SECONDS = 3600


def shard_name(shard: int, shards: int) -> str:
    """The deployment name of ``shard`` of ``shards``."""
    return f"{PREFIX}{shard}-of-{shards}"


def runner_deployment(shard: int, shards: int, pool: str = WORK_POOL) -> RunnerDeployment:
    """The deployment of one shard: hourly, concurrency limit 1, in this checkout."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.runner.storage import LocalStorage

    from flows.monitor_loop import monitor_continuous

    deployment = RunnerDeployment.from_flow(
        monitor_continuous,
        name=shard_name(shard, shards),
        description=f"Monitor shard {shard} of {shards} of the enabled integrations for an "
        "hour, a sweep every 5 s, alerts as they fire; the next hourly run takes over.",
        interval=RUN_SECONDS,
        concurrency_limit=1,
        parameters={"shard": shard, "shards": shards, "run_seconds": float(RUN_SECONDS)},
        tags=["junction", "kind:monitor", f"shard:{shard}-of-{shards}"],
        work_pool_name=pool,
    )
    # The worker loads the flow by its entrypoint in this checkout (as spec deployments do).
    deployment.entrypoint = ENTRYPOINT
    deployment.storage = LocalStorage(str(ROOT))
    return deployment


def run_deploy_shards(env: Mapping[str, str], pool: str = WORK_POOL, timeout: float = 300.0) -> str:
    """``python -m deployments.shards --pool POOL`` in ``env`` (``JUNCTION_MONITOR_SHARDS``
    and ``PREFECT_API_URL`` from there); returns its output.

    Raises:
        RuntimeError: It failed (the message holds its output).
    """
    args = [sys.executable, "-m", "deployments.shards", "--pool", pool]
    result = subprocess.run(
        args, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`python -m deployments.shards` exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


async def _arrange(shards: int) -> list[str]:
    """Pause or resume the unsharded deployment; delete shards of another count."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
    )

    keep = {shard_name(i, shards) for i in range(shards)} if shards > 1 else set()
    deleted = []
    async with get_client() as client:
        found = await client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(like_=PREFIX)),
        )
        for deployment in found:
            if deployment.name.startswith(PREFIX) and deployment.name not in keep:
                await client.delete_deployment(deployment.id)
                deleted.append(deployment.name)
        unsharded = await client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[UNSHARDED])),
        )
        for deployment in unsharded:
            if shards > 1:
                await client.pause_deployment(deployment.id)
            elif deleted:  # back from shards to one: the single deployment takes over
                await client.resume_deployment(deployment.id)
    return deleted


def deploy_shards(shards: int, pool: str = WORK_POOL) -> dict[str, UUID]:
    """Deploy the ``shards`` shard deployments (none for 1) and arrange the others.

    Args:
        shards: Monitor shards (``JUNCTION_MONITOR_SHARDS``).
        pool: The work pool (it must exist).

    Returns:
        Each shard deployment's id, by ``<flow>/<deployment>`` name.

    Raises:
        ValueError: ``shards`` is below 1.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    out: dict[str, UUID] = {}
    for shard in range(shards if shards > 1 else 0):
        # Called from synchronous code, Prefect's sync/async `apply` returns the id itself.
        applied = runner_deployment(shard, shards, pool).apply(work_pool_name=pool)
        out[f"{FLOW_NAME}/{shard_name(shard, shards)}"] = applied  # type: ignore[assignment]
    asyncio.run(_arrange(shards))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deployments.shards [--shards N] [--pool NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.shards",
        description="Deploy one monitor-continuous deployment per monitor shard on "
        "PREFECT_API_URL's server (JUNCTION_MONITOR_SHARDS; 1 restores the single one).",
    )
    parser.add_argument("--shards", type=int, default=None, help="default JUNCTION_MONITOR_SHARDS")
    parser.add_argument("--pool", default=WORK_POOL, help="work pool name")
    args = parser.parse_args(argv)
    if args.shards is None:
        from junction.settings import get_settings  # function-level: pydantic-settings

        args.shards = get_settings().monitor_shards
    if args.shards < 1:
        print(f"error: --shards must be at least 1, got {args.shards}", file=sys.stderr)
        return 2
    deployed = deploy_shards(args.shards, args.pool)
    for full_name, deployment_id in deployed.items():
        print(f"deployed {full_name} ({deployment_id})")
    if args.shards > 1:
        print(f"paused {FLOW_NAME}/{UNSHARDED}: the {args.shards} shards monitor instead")
    return 0


if __name__ == "__main__":
    sys.exit(main())
