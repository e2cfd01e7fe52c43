"""``junction sandbox``: the built-in sandbox of simulated services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from junction.cli.common import fail, load_settings, print_json, print_table, table, warn

sandbox_app = typer.Typer(help="The built-in sandbox of simulated services.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``junction sandbox`` to the top-level app."""
    app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[
        str,
        typer.Option(help="Interface to listen on (beyond 127.0.0.1, set an admin token)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port (0 = any free port).")] = 8765,
    faults: Annotated[
        Path | None, typer.Option(help="Fault profile YAML (see integrations/sandbox/profiles/).")
    ] = None,
    smtp_port: Annotated[
        int, typer.Option(help="SMTP port of the sandbox's mail server (0 = any free port).")
    ] = 8025,
    smtp: Annotated[bool, typer.Option(help="Run the SMTP server (--no-smtp to skip it).")] = True,
) -> None:
    """Serve every catalog integration locally, with state and fault injection.

    The admin API (/_admin) answers only same-origin, JSON requests to this machine's
    address; with JUNCTION_SANDBOX_ADMIN_TOKEN set it also requires that token as a bearer.
    """
    settings = load_settings()
    token = settings.sandbox_admin_token
    # Function-level: the sandbox imports starlette, uvicorn and its vendor modules (~1 s).
    from integrations.sandbox.app import serve

    if faults is not None and not faults.is_file():
        fail(f"fault profile not found: {faults}")
    try:
        serve(
            host=host,
            port=port,
            faults_file=faults,
            smtp_port=smtp_port if smtp else None,
            admin_token=token.get_secret_value() if token is not None else None,
        )
    except (ValueError, OSError) as exc:
        fail(str(exc))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _from_server(url: str, service: str | None, token: str | None) -> dict[str, Any] | None:
    """The records of the sandbox at ``url``; ``None`` when nothing answers there."""
    # Function-level: httpx is not needed for `junction --help`.
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"service": service} if service else {}
    try:
        resp = httpx.get(f"{url}/_admin/records", params=params, headers=headers, timeout=5.0)
    except httpx.HTTPError:
        return None
    if resp.status_code == 404 and "error" not in resp.text:
        return None  # something else listens there (an older sandbox, another server)
    if resp.status_code != 200:
        try:
            reason = resp.json().get("error", resp.text)
        except ValueError:
            reason = resp.text[:200]
        fail(f"the sandbox at {url} refused: {reason}")
    data: dict[str, Any] = resp.json()["services"]
    return data


def _seeded(service: str | None) -> dict[str, Any]:
    # Function-level: the vendor modules import starlette (not needed for `--help`).
    from integrations.sandbox.records import seeded_records
    from integrations.sandbox.routing import discover_vendor_routes

    return seeded_records(discover_vendor_routes(), service)


def _check_service(service: str) -> None:
    # Function-level: the catalog and the vendor modules (pydantic, starlette) are not
    # needed for `junction --help`.
    from integrations.catalog import load_catalog
    from integrations.sandbox.records import seeded_records
    from integrations.sandbox.routing import discover_vendor_routes
    from integrations.yamlconfig import did_you_mean

    listed = sorted(seeded_records(discover_vendor_routes()))
    if service in listed:
        return
    names = load_catalog().names
    if service not in names:
        fail(f"unknown service {service!r}{did_you_mean(service, names)}")
    fail(f"the sandbox seeds no records of {service}; services with records: {', '.join(listed)}")


@sandbox_app.command("records")
def sandbox_records(
    service: Annotated[
        str | None,
        typer.Argument(metavar="SERVICE", help="Only this service (workday, okta, gitlab...)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List the records the sandbox holds that workflows need ids from.

    For example Workday worker ids for `junction workflow run employee_onboarding -p
    worker_id=...`, Okta groups, GitLab projects and pipelines, PagerDuty services. Reads
    the running sandbox at JUNCTION_SANDBOX_URL (including what was created since it
    started); with no sandbox running, prints what it seeds when it starts (the ids are the
    same every time).
    """
    settings = load_settings()
    if service is not None:
        _check_service(service)
    token = settings.sandbox_admin_token
    url = settings.sandbox_url.rstrip("/")
    data = _from_server(url, service, token.get_secret_value() if token else None)
    if data is None:
        warn(
            f"no sandbox answers at {url}: these are the records it seeds when it starts "
            "(`junction sandbox serve`)"
        )
        data = _seeded(service)
    if as_json:
        print_json({"services": data})
        return
    for name, collections in data.items():
        for collection, listing in collections.items():
            fields: list[str] = listing["fields"]
            t = table(f"{name} {collection} ({len(listing['records'])})", *fields)
            for record in listing["records"]:
                t.add_row(*(_cell(record.get(f)) for f in fields))
            print_table(t)
