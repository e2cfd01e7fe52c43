"""The product plan's feature flags, checked where the feature runs.

* ``CROSS_SERVICE_ORCHESTRATION_ENABLED=false``: a workflow whose steps may call more than
  one integration (fallbacks and capability providers included) is refused before
  anything runs, by every path that starts one (``junction workflow run``, the service's
  ``POST /api/v2/workflows/run``, the workflow flows and their deployments). A workflow
  of one integration still runs: it orchestrates nothing across services.
* ``WORKFLOW_OPTIMIZATION_ENABLED=false``: optimization recommendations are neither
  computed nor applied (``junction analytics recommend|apply``, the service's
  ``/workflows/enhanced/optimization/*``; the analytics report leaves them out).

A refusal is :class:`FeatureDisabledError`, whose message is one line naming the flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from junction.workflows.depmap import step_nodes

if TYPE_CHECKING:
    from junction.settings import Settings
    from junction.workflows.spec import WorkflowSpec

__all__ = [
    "FeatureDisabledError",
    "check_optimization",
    "check_orchestration",
    "spec_integrations",
]

ORCHESTRATION_FLAG = "CROSS_SERVICE_ORCHESTRATION_ENABLED"
OPTIMIZATION_FLAG = "WORKFLOW_OPTIMIZATION_ENABLED"


class FeatureDisabledError(RuntimeError):
    """A feature flag is off for what was asked.

    Attributes:
        flag: The flag's variable (``WORKFLOW_OPTIMIZATION_ENABLED``).
    """

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(message)
        self.flag = flag


def spec_integrations(spec: WorkflowSpec) -> list[str]:
    """Every integration a run of ``spec`` may call (fallbacks and providers too), sorted."""
    return sorted({service for node in step_nodes(spec) for service in node.services})


def check_orchestration(spec: WorkflowSpec, settings: Settings) -> None:
    """Refuse a run of a cross-service ``spec`` while orchestration is disabled.

    Raises:
        FeatureDisabledError: The flag is off and the spec spans several integrations.
    """
    if settings.cross_service_orchestration_enabled:
        return
    services = spec_integrations(spec)
    if len(services) > 1:
        raise FeatureDisabledError(
            ORCHESTRATION_FLAG,
            f"workflow {spec.name!r} spans {len(services)} integrations "
            f"({', '.join(services)}) and cross-service orchestration is disabled "
            f"({ORCHESTRATION_FLAG}=false)",
        )


def check_optimization(settings: Settings) -> None:
    """Refuse computing or applying optimization recommendations while disabled.

    Raises:
        FeatureDisabledError: The flag is off.
    """
    if not settings.workflow_optimization_enabled:
        raise FeatureDisabledError(
            OPTIMIZATION_FLAG, f"workflow optimization is disabled ({OPTIMIZATION_FLAG}=false)"
        )
