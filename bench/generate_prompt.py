"""The LLM request of workflow generation: how big it is, compact against verbose.

Arms, measured in the same run (characters, and tokens estimated at four characters):

- ``verbose``: the spec's JSON Schema with its prose (descriptions, titles), and the
  catalog as one line per action with every input and the action's docstring line;
- ``compact`` (what :mod:`analytics.intelligence.llm` sends): the schema without prose,
  ``uses`` narrowed to the catalog's actions, and the catalog as ``integration.action(inputs)``
  without paging and dedupe inputs.

Run: ``.venv/bin/python -m bench.generate_prompt``. Needs no network: nothing is sent.
"""

from __future__ import annotations

import json

from analytics.intelligence.llm import (
    build_messages,
    compact_catalog,
    prompt_size,
    response_schema,
)
from integrations.catalog import load_catalog
from integrations.registry import client_class
from junction.workflows.spec import workflow_json_schema

REQUEST = (
    "when a GitLab pipeline fails, summarize the job log with OpenAI, post it to Webex and "
    "open a Jira issue"
)


def _verbose_catalog() -> str:
    lines = []
    for spec in load_catalog():
        for name, act in sorted(client_class(spec).actions().items()):
            inputs = ", ".join(
                f"{k}: {v.annotation!s}" + ("" if v.is_required() else " (optional)")
                for k, v in act.input.model_fields.items()
            )
            lines.append(f"- {spec.name}.{name}({inputs}): {act.description}")
    return "\n".join(lines)


def main() -> None:
    """Print the table of both arms and their ratio."""
    compact = prompt_size(REQUEST)
    messages = build_messages(REQUEST)
    verbose_messages = sum(len(m.content) for m in messages) - len(compact_catalog())
    verbose_messages += len(_verbose_catalog())
    verbose_schema = len(json.dumps(workflow_json_schema(), separators=(",", ":")))
    arms = {
        "verbose": (verbose_messages, verbose_schema),
        "compact": (
            compact.messages_chars,
            len(json.dumps(response_schema(), separators=(",", ":"))),
        ),
    }
    print("| arm | messages (chars) | schema (chars) | total (chars) | ~tokens |")
    print("|---|---|---|---|---|")
    for arm, (msg, schema) in arms.items():
        total = msg + schema
        print(f"| {arm} | {msg:,} | {schema:,} | {total:,} | {(total + 3) // 4:,} |")
    ratio = sum(arms["compact"]) / sum(arms["verbose"])
    print(f"\ncompact / verbose: {ratio:.2f}")


if __name__ == "__main__":
    main()
