"""``junction models``: the workflow success model's versions (list, train, promote, rollback).

Versions live under ``<JUNCTION_HOME>/models/success/`` with their metrics, training window,
features and scikit-learn version (:mod:`analytics.intelligence.models`). Without a live
version, predictions use the naive estimate.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from junction.cli.common import fail, load_settings, print_json, print_table, table, warn

models_app = typer.Typer(
    help="The workflow success model: list versions, train, promote, roll back.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``junction models`` to the top-level app."""
    app.add_typer(models_app, name="models")


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _day(value: Any) -> str:
    return str(value)[:16].replace("T", " ") if value else "-"


@models_app.command("list")
def list_versions(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every stored version: held-out Brier and AUC (model vs naive), window, live marker."""
    # deferred: pandas and scikit-learn cost seconds, `junction --help` must not pay them
    from analytics.intelligence.models import registry_for

    registry = registry_for(load_settings())
    doc = registry.read()
    versions = registry.versions()
    if as_json:
        print_json({"live": doc["live"], "versions": versions, "warnings": doc["warnings"]})
        return
    if not versions:
        typer.echo("no model versions: predictions use the naive estimate (junction models train)")
    else:
        t = table(
            None,
            "version",
            "live",
            "trained on",
            "held-out runs",
            "Brier model",
            "Brier naive",
            "AUC model",
            "AUC naive",
            "sklearn",
            right=("held-out runs", "Brier model", "Brier naive", "AUC model", "AUC naive"),
        )
        for v in versions:
            metrics = v.get("metrics", {})
            model, naive = metrics.get("model", {}), metrics.get("naive", {})
            window = v.get("training_window") or [None, None]
            t.add_row(
                v["version"],
                "live" if v["version"] == doc["live"] else "",
                f"{_day(window[0])} .. {_day(window[1])}",
                str(v.get("n_test", "-")),
                _fmt(model.get("brier")),
                _fmt(naive.get("brier")),
                _fmt(model.get("auc"), 3),
                _fmt(naive.get("auc"), 3),
                str(v.get("sklearn_version", "-")),
            )
        print_table(t)
        typer.echo(f"live: {doc['live'] or 'none (naive estimate)'}")
    for w in doc["warnings"][-5:]:
        warn(f"{w.get('at')}: {w.get('message')}")


@models_app.command("train")
def train(
    no_promote: Annotated[
        bool, typer.Option("--no-promote", help="Store the candidate without promoting it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Train a candidate on the recorded runs; promote it only if it beats the live model
    and the naive estimate on the most recent held-out runs."""
    # deferred: pandas and scikit-learn cost seconds, `junction --help` must not pay them
    from analytics.intelligence.models import train_and_maybe_promote

    result = train_and_maybe_promote(load_settings(), promote=not no_promote)
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(result.message)


@models_app.command("promote")
def promote(version: Annotated[str, typer.Argument(help="The version, e.g. v3.")]) -> None:
    """Make VERSION live (its file must verify)."""
    # deferred: pandas and scikit-learn cost seconds, `junction --help` must not pay them
    from analytics.intelligence.models import registry_for

    try:
        registry_for(load_settings()).promote(version)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"{version} is live")


@models_app.command("rollback")
def rollback() -> None:
    """Make the previously live version live again (none: the naive estimate)."""
    # deferred: pandas and scikit-learn cost seconds, `junction --help` must not pay them
    from analytics.intelligence.models import registry_for

    try:
        previous = registry_for(load_settings()).rollback()
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"{previous} is live" if previous else "no model is live: naive estimate")
