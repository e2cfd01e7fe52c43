"""Incidents over the wire (``/api/v2/incidents``), from the command line (piped, as in
CI), and on the dashboard's pages (hostile note text escaped), against a service of its
own whose alerts come from the real alert engine."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape
from typer.testing import CliRunner, Result

from junction.alerting import state as alert_state
from junction.alerting.alerts import list_alerts
from junction.alerting.engine import AlertEngine
from junction.cli import app
from junction.settings import Settings, get_settings
from tests.alerting_helpers import at, config, failing, healthy, snap, use_home
from tests.helpers import run_junction
from tests.service_helpers import ApiServer, ServiceServer
from tests.test_service_web import HOSTILE as WEB_HOSTILE
from tests.test_service_web import csrf_of, logged_in

HOSTILE = "<script>alert(1)</script> \"quoted\" 'single' javascript:alert(2)"
BASE = "/api/v2/incidents"


def cli(*args: str) -> Result:
    """``junction incidents ARGS`` in-process (output not a terminal, as when piped)."""
    return CliRunner().invoke(app, ["incidents", *args], env={"COLUMNS": "200"})


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The ``error`` of a response in the one shape (``code`` checked, no traceback)."""
    assert resp.status_code == status and "Traceback" not in resp.text, resp.text
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code, error
    return error


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, dict[str, str]]]:
    """A service with two incidents: okta+gitlab (resolved) and slack (open)."""
    home = tmp_path_factory.mktemp("incidents-home")
    settings = Settings(home=home, api_token=secrets.token_urlsafe(24))
    deps = "dependencies: {gitlab: [okta]}\ngrouping: {dependency_wait: 0s}\n"
    with AlertEngine(alert_state.db_path(settings), config(deps, ["slack"])) as eng:
        eng.evaluate([snap("okta", at(0), down=True)], now=at(0))
        eng.evaluate(failing(["gitlab"], at(10)), now=at(10))
        eng.evaluate(healthy(["gitlab"], at(100)), now=at(100))
        eng.evaluate([snap("okta", at(120), down=False)], now=at(120))
        eng.evaluate(failing(["slack"], at(5000)), now=at(5000))
        instance = alert_state.instance_id(eng.conn)
        first = {a.service: a.id for a in reversed(list_alerts(eng.conn, include_resolved=True))}
    # An incident's id is its first alert's.
    ids = {"okta": f"{instance}-i{first['okta']}", "slack": f"{instance}-i{first['slack']}"}
    with ServiceServer(settings) as server:
        yield server.info(), ids


@pytest.fixture
def api(served: tuple[ApiServer, dict[str, str]]) -> Iterator[httpx.Client]:
    with served[0].client() as client:
        yield client


def test_list_filters_and_pages(
    api: httpx.Client, served: tuple[ApiServer, dict[str, str]]
) -> None:
    ids = served[1]

    def listed(**params: str | int) -> list[str]:
        resp = api.get(BASE, params=params)
        assert resp.status_code == 200, resp.text
        return [i["id"] for i in resp.json()["incidents"]]

    assert listed() == [ids["slack"], ids["okta"]]
    assert listed(state="open") == [ids["slack"]]
    assert listed(state="resolved") == [ids["okta"]]
    assert listed(service="gitlab") == [ids["okta"]]
    assert listed(since="1h") == [ids["slack"]]  # resolved in 2026-11: long before
    assert listed(since="2026-11-27T11:00:00Z") == [ids["slack"], ids["okta"]]
    page = api.get(BASE, params={"limit": 1, "offset": 1}).json()
    assert [i["id"] for i in page["incidents"]] == [ids["okta"]] and page["total"] == 2
    assert page["next_cursor"] is None  # the last page
    first = api.get(BASE, params={"limit": 1}).json()
    assert [i["id"] for i in first["incidents"]] == [ids["slack"]] and first["next_cursor"]
    after = api.get(BASE, params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [i["id"] for i in after["incidents"]] == [ids["okta"]] and after["next_cursor"] is None
    for cursor in ("nope", "a" * 30, "a-1"):
        error = error_of(api.get(BASE, params={"cursor": cursor}), 422, "invalid_request")
        assert error["details"][0]["field"] == "query.cursor"
    okta = api.get(f"{BASE}/{ids['okta']}").json()
    assert okta["services"] == ["gitlab", "okta"] and okta["state"] == "resolved"
    assert okta["duration_seconds"] == 120.0
    assert {"firing", "suppressed", "resolved"} <= {e["kind"] for e in okta["timeline"]}
    for since in ("soon", "0001-01-01T00:00:00+01:00"):
        error = error_of(api.get(BASE, params={"since": since}), 422, "invalid_request")
        assert error["details"][0]["field"] == "query.since"
    error_of(api.get(BASE, params={"state": "closed"}), 422, "invalid_request")
    error = error_of(api.get(f"{BASE}/nope"), 404, "unknown_incident")
    assert error["details"]["field"] == "path.incident_id"


def test_notes_and_their_errors(
    api: httpx.Client, served: tuple[ApiServer, dict[str, str]]
) -> None:
    slack = served[1]["slack"]
    resp = api.post(f"{BASE}/{slack}/notes", json={"text": HOSTILE, "public": True, "by": "al"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["public"] is True and resp.json()["text"] == HOSTILE
    timeline = api.get(f"{BASE}/{slack}").json()["timeline"]
    assert [e["text"] for e in timeline if e["kind"] == "note"] == [HOSTILE]
    for text in ("   ", "x" * 10_001):
        error = error_of(
            api.post(f"{BASE}/{slack}/notes", json={"text": text}), 422, "invalid_request"
        )
        assert error["details"][0]["field"] == "body.text"
    error_of(api.post(f"{BASE}/nope/notes", json={"text": "hi"}), 404, "unknown_incident")
    with served[0].client(auth=False) as anonymous:
        error_of(anonymous.post(f"{BASE}/{slack}/notes", json={"text": "x"}), 401, "unauthorized")
        error_of(anonymous.get(BASE), 401, "unauthorized")


def test_postmortem_read_edit_and_conflicts(
    api: httpx.Client, served: tuple[ApiServer, dict[str, str]]
) -> None:
    ids = served[1]
    error_of(api.get(f"{BASE}/{ids['slack']}/postmortem"), 409, "incident_open")
    error_of(api.put(f"{BASE}/{ids['slack']}/postmortem", json={"text": "x"}), 409, "incident_open")
    error_of(api.get(f"{BASE}/nope/postmortem"), 404, "unknown_incident")
    url = f"{BASE}/{ids['okta']}/postmortem"
    draft = api.get(url).json()
    assert draft["revision"] == 0 and draft["text"] == draft["generated"]
    assert "Time to resolve (first alert to resolution): 2m (120 s)" in draft["text"]
    saved = api.put(url, json={"text": draft["text"] + "\nDNS.", "revision": 0, "by": "al"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["revision"] == 1 and saved.json()["edited"] is True
    error = error_of(api.put(url, json={"text": "late", "revision": 0}), 409, "revision_conflict")
    assert error["details"]["actual"] == 1
    error_of(api.put(url, json={"text": " \n "}), 422, "invalid_request")
    assert api.get(url).json()["text"].endswith("DNS.\n")


def test_cli_lists_notes_and_edits_when_piped(
    served: tuple[ApiServer, dict[str, str]],
    api: httpx.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, ids = served
    # As a user runs it, piped: one whole line per incident.
    listed = run_junction(["incidents", "list"], home=server.settings.home)
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if ids["okta"] in line]
    assert len(lines) == 1 and "gitlab, okta" in lines[0] and "resolved" in lines[0]
    # The other commands in-process (each run of a fresh process costs seconds here).
    use_home(server.settings.home, monkeypatch)
    try:
        noted = cli("note", ids["okta"], "rolled back", "--public", "--by", "cli")
        assert noted.exit_code == 0 and "public note" in noted.stdout, noted.output
        edited = tmp_path / "pm.md"
        edited.write_text("# Post-mortem\n\nRoot cause: DNS.\n")
        saved = cli("postmortem", ids["okta"], "--edit", str(edited))
        assert saved.exit_code == 0 and "revision" in saved.stdout, saved.output
        shown = cli("postmortem", ids["okta"])
        assert shown.stdout == edited.read_text()
        as_json = json.loads(cli("show", ids["okta"], "--json").stdout)
        assert [e["text"] for e in as_json["timeline"] if e["public"]] == ["rolled back"]
        missing = cli("show", "nope")
        assert missing.exit_code == 2 and "Traceback" not in missing.output
        assert missing.stderr.strip().startswith("error: no incident with id 'nope'")
        assert len(missing.stderr.strip().splitlines()) == 1
        still_open = cli("postmortem", ids["slack"])
        assert still_open.exit_code == 2 and "still open" in still_open.stderr
    finally:
        get_settings.cache_clear()
    timeline = api.get(f"{BASE}/{ids['okta']}").json()["timeline"]
    assert [(e["text"], e["author"]) for e in timeline if e["public"]] == [("rolled back", "cli")]


def test_pages_escape_hostile_notes_and_require_csrf(
    served: tuple[ApiServer, dict[str, str]], api: httpx.Client
) -> None:
    server, ids = served
    with logged_in(server) as browser:
        listing = browser.get("/incidents")
        assert listing.status_code == 200 and ids["okta"] in listing.text
        assert 'id="open-incidents"' in listing.text and ids["slack"] in listing.text
        page = f"/incidents/{ids['slack']}"
        csrf = csrf_of(browser.get(page).text)
        posted = browser.post(
            f"{page}/notes", data={"text": WEB_HOSTILE, "public": "on", "csrf_token": csrf}
        )
        assert posted.status_code == 303 and posted.headers["location"] == page
        shown = browser.get(page).text
        assert WEB_HOSTILE not in shown and str(escape(WEB_HOSTILE)) in shown
        assert "public note added" in shown
        refused = browser.post(f"{page}/notes", data={"text": "no token"})
        assert refused.status_code == 403
        resolved = f"/incidents/{ids['okta']}"
        body = browser.get(resolved).text
        assert 'id="postmortem-form"' in body and "Time to resolve" in body
        revision = re.search(r'name="revision" value="(\d+)"', body)
        assert revision is not None
        saved = browser.post(
            f"{resolved}/postmortem",
            data={"text": WEB_HOSTILE, "revision": revision.group(1), "csrf_token": csrf},
        )
        assert saved.status_code == 303
        body = browser.get(resolved).text
        assert WEB_HOSTILE not in body and str(escape(WEB_HOSTILE)) in body
        assert browser.get("/incidents/nope").status_code == 404
    notes = [e["text"] for e in api.get(f"{BASE}/{ids['slack']}").json()["timeline"]]
    assert WEB_HOSTILE in notes and "no token" not in notes
