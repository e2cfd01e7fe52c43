"""``junction workflow analyze SPEC``: a spec's validation, critical path, risks, success
prediction and the what-if of the recommended changes (:mod:`analytics.intelligence.analyze`).

Exit codes: 0 analysed (a valid spec), 1 the spec does not validate (the analysis still
shows what it can), 2 bad input (no such file or built-in, unreadable YAML, not a spec).
Nothing runs and nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from junction.cli.common import console, fail, load_settings, print_json, print_table, table

if TYPE_CHECKING:
    from rich.table import Table

    from analytics.intelligence.analyze import Analysis, Delta


def register(workflow_app: typer.Typer) -> None:
    """Add ``analyze`` to the ``junction workflow`` group."""
    workflow_app.command("analyze")(analyze)


def analyze(
    spec: Annotated[
        str, typer.Argument(metavar="SPEC", help="A spec file or a built-in spec's name.")
    ],
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=366,
            help="Days of history read (default: JUNCTION_ANALYTICS_REPORT_DAYS).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Analyse a spec without running it: validation, the critical path with p50/p95 per
    step from the metrics store, steps that could run in parallel, steps without retries,
    timeout or fallback, side effects without an idempotency key, the predicted success
    probability, and the same with the recommended changes applied (what-if).
    """
    # Function-level: pandas, DuckDB, scikit-learn and the validator stay out of `--help`.
    from analytics.intelligence.analyze import analyze_spec
    from integrations.yamlconfig import ConfigError

    settings = load_settings()
    try:
        analysis = analyze_spec(spec, settings, days=days)
    except FileNotFoundError as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail(exc.first)
    except OSError as exc:
        fail(f"cannot read {spec} or the metrics store: {exc}")
    if analysis.name is None or (not analysis.steps and analysis.validation.errors):
        first = analysis.validation.errors[0] if analysis.validation.errors else None
        more = len(analysis.validation.errors) - 1
        where = f"{analysis.source}:{first.line}" if first and first.line else analysis.source
        fail(
            f"{where}: not a workflow spec: {first.message if first else 'no steps'}"
            + (f" (and {more} more; `junction workflow validate` lists them)" if more > 0 else "")
        )
    if as_json:
        print_json(analysis.model_dump(mode="json"))
    else:
        render(analysis)
    if not analysis.validation.ok:
        raise typer.Exit(1)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _row(t: Table, *cells: str) -> None:
    # Cells are plain text: a spec's values and the validator's messages are not markup.
    t.add_row(*(Text(cell) for cell in cells))


def _line(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def render(analysis: Analysis) -> None:
    """Print an analysis as text and tables (readable when piped)."""
    v = analysis.validation
    _line(f"{analysis.name} ({analysis.source})")
    state = "ok" if v.ok else f"{len(v.errors)} errors"
    warnings = (
        f", {len(v.warnings)} warning{'s' if len(v.warnings) > 1 else ''}" if v.warnings else ""
    )
    _line(f"validation: {state}{warnings}")
    for kind, problems in (("error", v.errors), ("warning", v.warnings)):
        for p in problems:
            where = f"line {p.line}" if p.line else ""
            who = f"step {p.step}" if p.step else ""
            _line(f"  {kind}: {', '.join(x for x in (where, who) if x) or '-'}: {p.message}")
    w = analysis.window
    _line(
        f"history: {w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} UTC ({w.days} days)"
        if w
        else "history: none (the metrics store has no calls or probes)"
    )
    _steps(analysis)
    _findings(analysis)
    _success(analysis)
    _what_if(analysis)
    for note in analysis.notes:
        _line(f"note: {note}")


def _steps(analysis: Analysis) -> None:
    t = table(
        None,
        "step",
        "calls (action)",
        "calls",
        "ok",
        "p50 ms",
        "p95 ms",
        "critical",
        "note",
        right=("calls", "ok", "p50 ms", "p95 ms"),
    )
    for s in analysis.steps:
        _row(
            t,
            s.step,
            s.measured or s.uses,
            f"{s.calls:,}",
            "-" if s.success_rate is None else f"{s.success_rate:.1%}",
            _ms(s.p50_ms),
            _ms(s.p95_ms),
            "yes" if s.critical else "",
            s.note or "",
        )
    print_table(t)
    cp = analysis.critical_path
    if cp is None:
        return
    _line(
        f"critical path: {' -> '.join(cp.steps)}: p50 {_ms(cp.p50_ms)} ms, p95 {_ms(cp.p95_ms)} ms"
        + (
            f" (partial: no history for {', '.join(cp.without_history)}, counted as 0 ms)"
            if cp.partial
            else ""
        )
    )


def _findings(analysis: Analysis) -> None:
    if analysis.parallelizable:
        t = table("could run in parallel", "step", "waits for", "p95 saved ms", "note")
        for p in analysis.parallelizable:
            _row(t, p.step, p.waits_for, _ms(p.p95_saving_ms), p.note)
        print_table(t)
    else:
        _line("could run in parallel: none (every `needs` orders steps that share data)")
    if analysis.unprotected:
        t = table("without retries, timeout or fallback", "step", "missing", "note")
        for u in analysis.unprotected:
            _row(t, u.step, ", ".join(u.missing), u.note)
        print_table(t)
    else:
        _line("every step has retries (where allowed), a timeout and a fallback")
    if analysis.unkeyed_side_effects:
        t = table("side effects without an idempotency key", "step", "action", "key field", "note")
        for e in analysis.unkeyed_side_effects:
            _row(t, e.step, e.action, e.key_field or "-", e.note)
        print_table(t)
    else:
        _line("every side-effecting step has an idempotency key")


def _success(analysis: Analysis) -> None:
    s = analysis.success
    if s is None:
        return
    shown = "-" if s.probability is None else f"{s.probability:.0%}"
    text = (
        f"{shown} likely to succeed ({s.method})"
        if s.confident
        else f"not confident (estimate {shown}, {s.method})"
    )
    _line(f"success: {text}")
    for reason in s.reasons:
        _line(f"  - {reason}")
    if s.note:
        _line(f"  note: {s.note}")


def _delta(d: Delta, fmt: str, unit: str) -> str:
    before = "-" if d.before is None else format(d.before, fmt)
    after = "-" if d.after is None else format(d.after, fmt)
    change = "" if d.change is None else f" ({d.change:+{fmt}}{unit})"
    return f"{before}{unit} -> {after}{unit}{change}"


def _what_if(analysis: Analysis) -> None:
    w = analysis.what_if
    if w is None:
        return
    if w.changes:
        t = table(
            "what-if: recommended changes", "id", "change", "confidence", "applied",
            right=("confidence",),
        )  # fmt: skip
        for c in w.changes:
            _row(
                t,
                c.id,
                f"{c.step}.{c.field}: {c.old!r} -> {c.new!r}",
                f"{c.confidence:.2f}",
                "yes" if c.applied else f"no: {c.reason}",
            )
        print_table(t)
    if w.note:
        _line(f"what-if: {w.note}")
    if w.changes and w.valid:
        _line(f"what-if critical path p95: {_delta(w.critical_path_p95_ms, ',.0f', ' ms')}")
        p = w.success_probability
        if p.before is not None and p.after is not None:
            _line(
                f"what-if success probability: {p.before:.1%} -> {p.after:.1%} "
                f"({(p.after - p.before) * 100:+.1f} points)"
            )
    for e in w.errors:
        _line(f"  what-if error: {e.step or '-'}: {e.message}")
