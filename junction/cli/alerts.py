"""`junction alerts`: list, acknowledge and silence alerts; inspect the outbox.

State lives in ``<JUNCTION_HOME>/alerts.db`` (``JUNCTION_ALERTS_DB``), shared with the
monitor: an acknowledgement or a silence made here takes effect at its next evaluation.
A damaged database is one error line naming ``junction alerts reset``, which moves it
aside and starts a fresh one.

The alerting modules are imported inside the commands: asyncio, pydantic and the catalog
would otherwise load on every ``junction --help``.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from junction.cli.common import (
    console,
    fail,
    load_settings,
    print_json,
    print_table,
    table,
    warn,
)

if TYPE_CHECKING:
    from junction.statedb import Connection

alerts_app = typer.Typer(
    help="Alerts: list, acknowledge, silence; the notification outbox.", no_args_is_help=True
)

_SEVERITY_STYLE = {"critical": "red", "warning": "yellow"}
_STATE_STYLE = {"firing": "bold", "acknowledged": "cyan", "resolved": "green"}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(alerts_app, name="alerts")


def _connect() -> Connection:
    """The alert database; a damaged or unopenable one is one line and exit 2."""
    from junction.alerting import state  # deferred: keeps `junction --help` fast

    try:
        return state.connect(state.db_path(load_settings()))
    except state.AlertDatabaseError as exc:
        fail(str(exc))


MAX_START_DELAY = timedelta(days=366)
"""How far ahead ``silence --start`` may schedule a silence."""

_SILENCE_OPTIONS = {
    "duration": "--for",
    "service": "--service",
    "rule": "--rule",
    "starts_at": "--start",
}
"""The option of each field a silence's checks name."""


def _now() -> datetime:
    return datetime.now(UTC)


def _ago(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "-"
    from junction.alerting.rules import format_duration  # deferred: keeps --help fast

    delta = now - ts
    return format_duration(delta) + " ago" if delta.total_seconds() >= 1 else "now"


def _warn_unrouted() -> None:
    """Say on stderr when alerts reach nobody (no channel or route configured)."""
    # deferred: keeps `junction --help` fast
    from junction.alerting.config import AlertConfigError, load_settings_config
    from junction.alerting.rules import delivery_warning

    try:
        note = delivery_warning(load_settings_config(load_settings()))
    except AlertConfigError:  # `junction alerts check` names the problems; listing still works
        return
    if note:
        warn(note)


@alerts_app.command("list")
def list_alerts(
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Include resolved alerts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List unresolved alerts (--all: resolved ones too)."""
    from junction.alerting.alerts import list_alerts  # deferred: keeps --help fast

    conn = _connect()
    try:
        alerts = list_alerts(conn, include_resolved=show_all)
    finally:
        conn.close()
    if as_json:
        print_json([a.to_json() for a in alerts])
        return
    if not alerts:
        console.print("no alerts" if show_all else "no active alerts")
        return
    _warn_unrouted()  # these alerts told nobody: say so (stderr; not with --json)
    now = _now()
    out = table("Alerts", "id", "severity", "state", "fingerprint", "since", "message", "notes")
    for a in alerts:
        notes = []
        if a.suppressed_by:
            notes.append(f"suppressed: {a.suppressed_by} down")
        if a.silenced_by:
            notes.append(f"silenced ({a.silenced_by})")
        if a.inhibited_by:
            notes.append(f"inhibited by {a.inhibited_by}")
        if a.acked_by:
            notes.append(f"acked by {a.acked_by}")
        if a.annotation:
            notes.append(a.annotation)
        sev = _SEVERITY_STYLE.get(a.severity.value, "")
        st = _STATE_STYLE.get(a.state.value, "")
        out.add_row(
            str(a.id),
            f"[{sev}]{a.severity.value}[/]",
            f"[{st}]{a.state.value}[/]",
            escape(a.fingerprint),
            _ago(a.started_at, now),
            escape(a.message),
            escape("; ".join(notes)),
        )
    print_table(out)


@alerts_app.command("ack")
def ack(
    ref: Annotated[
        str, typer.Argument(metavar="ALERT", help="Alert id or fingerprint (service:rule).")
    ],
    by: Annotated[
        str | None, typer.Option("--by", help="Who acknowledges (default: $USER).")
    ] = None,
) -> None:
    """Acknowledge an alert and the rest of its incident: stops escalation and repeats."""
    # deferred: keeps `junction --help` fast
    from junction.alerting.actions import acknowledge_alert
    from junction.alerting.alerts import AlertNotFoundError, AlertResolvedError

    who = by or getpass.getuser()
    conn = _connect()
    try:
        try:
            history = load_settings().metrics_dir
            alerts = acknowledge_alert(conn, ref, who, _now(), history=history)
        except (AlertNotFoundError, AlertResolvedError) as exc:
            fail(str(exc.args[0]))
    finally:
        conn.close()
    alert, others = alerts[0], alerts[1:]
    more = f" and {len(others)} more of its incident" if others else ""
    typer.echo(f"acknowledged alert {alert.id} ({alert.fingerprint}){more} by {alert.acked_by}")


def _labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--label must look like key=value, got {item!r}")
        labels[key.strip()] = value.strip()
    return labels


@alerts_app.command("silence")
def silence(
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d.")],
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Service to silence.")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", "-r", help="Rule to silence.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", "-l", metavar="KEY=VALUE", help="Label matcher key=value (repeatable)."
        ),
    ] = None,
    comment: Annotated[str, typer.Option("--comment", "-c", help="Why.")] = "",
    by: Annotated[str | None, typer.Option("--by", help="Who (default: $USER).")] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="WHEN",
            help="Start later: an ISO-8601 time or a delay (2h) from now (scheduled maintenance).",
        ),
    ] = None,
    public: Annotated[
        bool,
        typer.Option("--public", help="Show it, with its comment, as maintenance on /status."),
    ] = False,
) -> None:
    """Silence matching alerts for a while (no firing/escalation/repeat messages; the
    resolved message is still sent to whoever was told)."""
    # deferred: keeps `junction --help` fast
    from junction.alerting.actions import SilenceInputError, create_silence
    from junction.alerting.rules import format_duration

    now = _now()
    starts_at = _start(start, now) if start is not None else None
    conn = _connect()
    try:
        try:
            created = create_silence(
                conn,
                now=now,
                duration=duration,
                service=service,
                rule=rule,
                labels=_labels(label or []),
                created_by=by or getpass.getuser(),
                comment=comment,
                starts_at=starts_at,
                public=public,
            )
        except SilenceInputError as exc:
            option = _SILENCE_OPTIONS.get(exc.field or "")
            fail(f"{option}: {exc.message}" if option else exc.message)
    finally:
        conn.close()
    delta = created.ends_at - created.starts_at
    begins = f"from {created.starts_at.isoformat(timespec='seconds')} " if created.scheduled else ""
    typer.echo(
        f"silence {created.id} {begins}until {created.ends_at.isoformat(timespec='seconds')} "
        f"({format_duration(delta)}){' (public)' if created.public else ''}"
    )


def _start(value: str, now: datetime) -> datetime:
    """``--start``: an ISO-8601 time (naive: UTC) or a delay from ``now``."""
    from junction.alerting.rules import parse_duration  # deferred: keeps --help fast

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        try:
            return now + parse_duration(value, maximum=MAX_START_DELAY)
        except ValueError as exc:
            fail(f"--start: not a time or a delay: {exc}")
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when > now + MAX_START_DELAY:
        fail("--start: must be at most a year ahead")
    return when


@alerts_app.command("silences")
def silences(
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Include expired ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List silences (active ones; --all: expired and removed too)."""
    from junction.alerting.silences import list_silences  # deferred: keeps --help fast

    conn = _connect()
    try:
        found = list_silences(conn, _now(), include_expired=show_all)
    finally:
        conn.close()
    if as_json:
        print_json([s.to_json() for s in found])
        return
    if not found:
        console.print("no silences")
        return
    out = table("Silences", "id", "service", "rule", "labels", "ends", "by", "comment")
    for s in found:
        out.add_row(
            s.id,
            escape(s.service or "*"),
            escape(s.rule or "*"),
            escape(",".join(f"{k}={v}" for k, v in s.labels.items()) or "-"),
            ("removed " if s.deleted_at else "") + s.ends_at.isoformat(timespec="seconds"),
            escape(s.created_by),
            escape(s.comment),
        )
    print_table(out)


@alerts_app.command("unsilence")
def unsilence(
    sid: Annotated[str, typer.Argument(metavar="SILENCE", help="Silence id (s1, s2, ...).")],
) -> None:
    """End a silence now."""
    from junction.alerting.silences import remove_silence  # deferred: keeps --help fast

    conn = _connect()
    try:
        try:
            remove_silence(conn, sid, _now())
        except LookupError as exc:
            fail(str(exc.args[0]))
    finally:
        conn.close()
    typer.echo(f"silence {sid} removed")


@alerts_app.command("outbox")
def outbox(
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Include delivered rows.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Notifications not delivered yet (pending, needing a check, failed)."""
    from junction.alerting.outbox import Outbox  # deferred: keeps `junction --help` fast

    conn = _connect()
    try:
        box = Outbox(conn)
        rows = box.rows() if show_all else box.rows("pending", "sending", "needs_check", "failed")
    finally:
        conn.close()
    if as_json:
        print_json(
            [
                {
                    "key": r.key,
                    "channel": r.channel,
                    "kind": r.kind,
                    "status": r.status,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "title": r.notification.title,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        console.print("outbox empty")
        return
    out = table(
        "Outbox",
        "key",
        "channel",
        "kind",
        "status",
        "attempts",
        "last error",
        "title",
        right=("attempts",),
    )
    for r in rows:
        out.add_row(
            escape(r.key),
            escape(r.channel),
            r.kind,
            r.status,
            str(r.attempts),
            escape(r.last_error or ""),
            escape(r.notification.title),
        )
    print_table(out)


@alerts_app.command("settle")
def settle(
    key: Annotated[
        str, typer.Argument(metavar="KEY", help="Notification key (see `junction alerts outbox`).")
    ],
    delivered: Annotated[
        bool,
        typer.Option(
            "--delivered/--resend",
            help="It did arrive (mark delivered) / it did not (send it again).",
        ),
    ],
) -> None:
    """Settle a notification that may or may not have arrived (status needs_check)."""
    from junction.alerting.outbox import Outbox  # deferred: keeps `junction --help` fast

    conn = _connect()
    try:
        try:
            Outbox(conn).settle(key, delivered=delivered)
        except LookupError as exc:
            fail(str(exc.args[0]))
    finally:
        conn.close()
    typer.echo(f"{key}: " + ("marked delivered" if delivered else "queued to be sent again"))


@alerts_app.command("check-config")
def check_config(
    path: Annotated[
        str | None,
        typer.Argument(metavar="FILE", help="Alerting YAML (default: JUNCTION_ALERTING_FILE)."),
    ] = None,
) -> None:
    """Validate an alerting configuration file; print every problem with its line."""
    from junction.alerting.config import AlertConfigError, load_config  # deferred: --help speed

    settings = load_settings()
    target = path or (str(settings.alerting_file) if settings.alerting_file else None)
    if target is None:
        fail("no file given and JUNCTION_ALERTING_FILE is not set")
    try:
        config = load_config(target, settings=settings)
    except AlertConfigError as exc:
        if len(exc.problems) == 1:
            fail(str(exc))
        fail(f"invalid alerting configuration ({len(exc.problems)} problems):\n{exc}")
    typer.echo(
        f"{target}: ok ({len(config.channels)} channels, {len(config.overrides)} service "
        f"overrides, {len(config.dependencies)} dependency entries, "
        f"{len(config.maintenance)} maintenance windows)"
    )


@alerts_app.command("reset")
def reset(
    force: Annotated[
        bool, typer.Option("--force", help="Also reset a healthy database (its state is lost).")
    ] = False,
) -> None:
    """Move a damaged alert database aside (kept as alerts.db.corrupt-<time>) and start fresh.

    Unresolved alerts, silences and undelivered notifications are lost; the alert history
    already in the metrics store is kept, and the monitor re-fires what is still wrong.
    Stop `junction monitor` first.
    """
    from junction.alerting import state  # deferred: keeps `junction --help` fast

    path = state.db_path(load_settings())
    try:
        moved = state.reset_database(path, _now(), force=force)
    except (state.AlertDatabaseError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot move the alert database {path} aside: {exc.strerror or exc}")
    if moved is None:
        typer.echo(f"no alert database at {path}; created an empty one")
    else:
        typer.echo(f"moved {path} to {moved}; started a fresh alert database")


@alerts_app.command("channel-types")
def channel_types(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the alert channel types and the fields each takes in `channels:`."""
    from junction.alerting.channels import CHANNELS  # deferred: keeps `junction --help` fast

    found: list[dict[str, Any]] = []
    rows: list[tuple[str, str, str, str]] = []
    for kind, cls in sorted(CHANNELS.items()):
        fields = {
            info.alias or name: {
                "required": info.is_required(),
                "description": (info.description or "").strip(),
            }
            for name, info in cls.Params.model_fields.items()
            if name != "type"
        }
        summary = (cls.Params.__doc__ or "").strip().splitlines()[0].replace("``", "")
        found.append(
            {
                "type": kind,
                "integration": cls.integration,
                "resend_safe": cls.dedupes,
                "summary": summary,
                "fields": fields,
            }
        )
        rows.append(
            (
                kind,
                cls.integration,
                "yes" if cls.dedupes else "no",
                ", ".join(f"{n}*" if f["required"] else n for n, f in fields.items()),
            )
        )
    if as_json:
        print_json(found)
        return
    out = table("Alert channel types", "type", "integration", "resend safe", "fields")
    for row in rows:
        out.add_row(*(escape(cell) for cell in row))
    print_table(out)
    console.print("* required", highlight=False)
