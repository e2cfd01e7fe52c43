"""The generate-workflow flow (deployment ``generate-workflow``, no schedule): a workflow
spec from plain words, published as a preview artifact; nothing runs.

The same function as ``junction workflow generate`` and the service's
``intelligence/generate`` (:func:`analytics.intelligence.generate.generate`): offline
planner by default, the LLM when ``JUNCTION_LLM_MODEL`` is set, every spec validated,
``save`` stores it as a new revision. A refusal (or bad input, or the flag off) fails the
run with the one-line reason, after the artifact says it.

    prefect deployment run generate-workflow/generate-workflow \\
      -p text="when a GitLab pipeline fails, open a Jira issue"
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from analytics.intelligence.generate import GenerateError, generate
from junction.settings import get_settings


@task(name="generate-spec", cache_policy=NO_CACHE, persist_result=False)
def generate_spec(text: str, name: str | None, save: bool) -> dict[str, Any]:
    """Plan, validate and (when asked and valid) save; the preview as plain data."""
    try:
        return generate(text, get_settings(), name=name, save=save).as_dict()
    except GenerateError as exc:  # flag off, bad description or name: a refusal too
        return {"ok": False, "refusal": str(exc)}


def preview_markdown(result: dict[str, Any]) -> str:
    """The preview as markdown: the YAML, confidence, assumptions, diff (or the refusal)."""
    if not result.get("ok"):
        return f"# Workflow not generated\n\n{result.get('refusal')}\n"
    lines = [
        f"# Generated workflow `{result['name']}`",
        "",
        f"{result['source']} planner, confidence {result['confidence']:.2f}",
        "",
        *[f"- assumed: {a}" for a in result["assumptions"]],
        "",
        "```yaml",
        str(result["yaml"]).rstrip("\n"),
        "```",
    ]
    if result.get("diff"):
        lines += ["", f"Against `{result['existing']}`:", "```diff", result["diff"], "```"]
    if result.get("saved"):
        lines += ["", f"Saved as `{result['saved']}`."]
    return "\n".join(lines) + "\n"


@task(name="publish-generated-spec", cache_policy=NO_CACHE, persist_result=False)
def publish_preview(result: dict[str, Any]) -> None:
    """The preview as the ``generated-workflow`` markdown artifact."""
    create_markdown_artifact(
        key="generated-workflow",
        markdown=preview_markdown(result),
        description="A workflow spec generated from plain words (not run).",
    )


@flow(name="generate-workflow", log_prints=False)
def generate_workflow(text: str, name: str | None = None, save: bool = False) -> dict[str, Any]:
    """Generate a workflow spec from plain words and publish its preview.

    Args:
        text: What the workflow does, in plain words.
        name: The spec's name (default: the planner's).
        save: Store a valid spec in the spec folder as a new revision.

    Returns:
        The preview (the same JSON as ``junction workflow generate --json``).

    Raises:
        ValueError: Nothing was generated (the message is the one-line reason).
    """
    result = generate_spec(text, name, save)
    publish_preview(result)
    if not result.get("ok"):
        raise ValueError(str(result.get("refusal")))
    return result
