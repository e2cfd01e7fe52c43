"""``/api/v2/workflows/enhanced/intelligence``: analysing and generating workflows.

Both endpoints of the product plan are here so the API's shape is complete; the workflow
intelligence they serve (issue 12) is not built yet, so each answers 501
``not_implemented`` saying so, after the token check like every write.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from junction.service.deps import require_token
from junction.service.errors import ApiError
from junction.service.lookups import ErrorBody, error_responses

router = APIRouter(
    prefix="/api/v2/workflows/enhanced/intelligence",
    tags=["intelligence"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401),
)

NOT_BUILT = (
    "workflow intelligence is not implemented yet (issue 12 builds it); "
    "meanwhile use POST /api/v2/workflows/validate and /api/v2/workflows/enhanced/"
    "optimization/analyze"
)


def _placeholder(what: str, summary: str, plan: str) -> None:
    """Register ``POST /<what>``: it answers 501 ``not_implemented`` naming issue 12."""

    def endpoint() -> ErrorBody:
        raise ApiError(501, "not_implemented", f"intelligence/{what}: {NOT_BUILT}")

    endpoint.__name__ = what
    endpoint.__doc__ = f"{plan}; answers 501 until issue 12 builds it."
    router.post(
        f"/{what}",
        response_model=ErrorBody,
        status_code=501,
        responses=error_responses(501),
        summary=f"{summary} (not implemented yet)",
    )(endpoint)


_placeholder("analyze", "Analyse a workflow", "Will analyse a workflow's structure and history")
_placeholder(
    "generate",
    "Generate a workflow from a description",
    "Will generate a workflow spec from plain English",
)
