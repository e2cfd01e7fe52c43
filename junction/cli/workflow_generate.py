"""``junction workflow generate "TEXT"``: a workflow spec from plain words, as a preview.

Standard output is the spec's YAML (or ``-o FILE`` gets it), so ``> my.yaml`` works;
what goes with it (confidence, assumptions, words not understood, the validator's
warnings, the diff against an existing spec of the same name, where ``--save`` wrote it)
goes to standard error. ``--json`` prints everything as one JSON object instead. Nothing
runs: ``junction workflow run`` runs a spec when the user decides to.

Exit codes: 0 a valid spec, 1 refused (one line saying why: words it cannot map, an
integration Junction lacks, an unsafe or invalid spec), 2 bad input (flag off, empty or
too long description, bad name or output file).

Function-level imports keep ``junction --help`` fast (the planner and validator import
the catalog, pydantic models and jinja).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from junction.cli.common import fail, load_settings, print_json

if TYPE_CHECKING:
    from analytics.intelligence.generate import GenerateResult


def _read_text(text: str) -> str:
    if text != "-":
        return text
    try:
        return sys.stdin.read()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"text: cannot read the description from standard input: {exc}")


_CONTROL = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)], "?")
"""Control characters (but newline and tab): never written raw to a terminal."""


def _notes(result: GenerateResult) -> None:
    """What goes with the spec, on standard error (plain text: no markup, no emoji codes)."""
    plan = result.plan
    lines = [f"# {plan.source} planner, confidence {plan.confidence:.2f}"]
    lines += [f"# assumed: {item}" for item in plan.assumptions]
    lines += [f"# not understood: {item}" for item in plan.unmapped]
    if result.validation is not None:
        lines += [f"# warning: {w.message}" for w in result.validation.warnings]
    if result.diff:
        lines.append(result.diff.rstrip("\n"))
    elif result.existing is not None:
        lines.append(f"# same as {result.existing}")
    if result.saved is not None:
        kept = f" (previous kept as {result.revision})" if result.revision else ""
        lines.append(f"# saved {result.saved}{kept}")
    sys.stderr.write("\n".join(lines).translate(_CONTROL) + "\n")


def generate_command(
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT", help="What the workflow does, in plain words ('-': standard input)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the spec's YAML to this file.")
    ] = None,
    save: Annotated[
        bool,
        typer.Option(
            "--save",
            help="Store the spec in the spec folder (JUNCTION_ANALYTICS_SPEC_DIR, else "
            "<JUNCTION_HOME>/specs) as a new revision; the previous one is kept in .history/.",
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="The spec's name (default: the planner's).")
    ] = None,
) -> None:
    """Generate a workflow spec from plain words: preview it, diff it, optionally save it.

    The offline planner by default; the LLM when JUNCTION_LLM_MODEL is set. Every spec is
    validated like a hand-written one; nothing runs. Behind AI_WORKFLOW_ENABLED.
    """
    # Function-level: the planner, the validator and the LLM client are heavy to import.
    from analytics.intelligence.generate import GenerateError, generate, save_result

    settings = load_settings()
    description = _read_text(text)
    try:
        result = generate(description, settings, name=name)
    except GenerateError as exc:
        fail(escape(str(exc)))
    if result.refusal is not None:
        if as_json:
            print_json(result.as_dict())
            raise typer.Exit(1)
        fail(escape(result.refusal), code=1)
    assert result.yaml is not None
    # -o before --save: a file that cannot be written leaves nothing saved either.
    if output is not None:
        try:
            output.write_text(result.yaml, encoding="utf-8")
        except OSError as exc:
            fail(escape(f"-o: cannot write {output}: {exc.strerror or exc}"))
    if save:
        try:
            save_result(result, settings)
        except OSError as exc:
            fail(escape(f"--save: cannot write the spec folder: {exc.strerror or exc}"))
    if as_json:
        print_json(result.as_dict())
        return
    if output is None:
        sys.stdout.write(result.yaml)
    _notes(result)


def register(group: typer.Typer) -> None:
    """Add ``generate`` to the ``junction workflow`` group."""
    group.command("generate")(generate_command)
