"""Sandbox Prometheus Alertmanager (API v2): alerts, silences, status.

Plays Alertmanager's ``api/v2/openapi.yaml`` as v0.25 behaves: ``POST /alerts`` merges an
alert into the one with the same label set (its fingerprint), keeping the first
``startsAt`` while it fires and defaulting ``endsAt`` to now + the resolve timeout (5 m);
it answers 200 with an empty body. Errors are v0.25's: a body breaking the API schema
is 422 ``{"code": 602, "message": "0.labels in body is required"}`` (go-swagger's
validation), an unparsable body 400 ``{"code": 400, "message": ...}``, a semantic error
(end before start, a bad matcher) 400 with a JSON string body. ``GET /alerts`` and
``GET /silences`` take ``filter`` matchers (``name="v"``, ``!=``, ``=~``, ``!~``); an
alert matched by an active silence is ``suppressed`` with ``silencedBy``. Silences get
UUIDs and states ``pending``/``active``/``expired``; ``DELETE /silence/{id}`` expires one.
Collections: ``alerts`` (by fingerprint) and ``silences`` (by id).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import JSONResponse, Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
)

routes = VendorRoutes("alertmanager")

RESOLVE_TIMEOUT = timedelta(minutes=5)
RECEIVER = {"name": "junction-sandbox"}
_STARTED = datetime.now(UTC)
_MATCHER = re.compile(
    r'^\s*\{?\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*\}?\s*$'
)


class _BadRequest(Exception):
    """A semantic error: 400 with a JSON string body."""


class _Invalid(Exception):
    """A schema violation: 422 ``{"code": 602, "message": ...}``."""


def _bad(message: str) -> Response:
    return JSONResponse(message, status_code=400)


def _invalid(message: str, code: int = 602) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=422)


def _unparsable(message: str) -> Response:
    return JSONResponse({"code": 400, "message": message}, status_code=400)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any, field: str) -> datetime | None:
    if value in (None, "", "0001-01-01T00:00:00Z"):
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{field} in body must be of type date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(f"{field} in body must be of type date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fingerprint(labels: dict[str, str]) -> str:
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _matchers(values: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for raw in values:
        m = _MATCHER.match(raw)
        if m is None:
            raise _BadRequest(f"bad matcher format: {raw}")
        out.append((m[1], m[2], re.sub(r"\\(.)", r"\1", m[3])))
    return out


def _match(labels: dict[str, str], name: str, op: str, value: str) -> bool:
    actual = labels.get(name, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    hit = re.fullmatch(value, actual) is not None
    return hit if op == "=~" else not hit


def _silence_state(silence: dict[str, Any], now: datetime) -> str:
    starts = _parse_time(silence["startsAt"], "startsAt")
    ends = _parse_time(silence["endsAt"], "endsAt")
    assert starts is not None and ends is not None
    if now >= ends:
        return "expired"
    return "active" if now >= starts else "pending"


def _silenced_by(state: ServiceState, labels: dict[str, str], now: datetime) -> list[str]:
    hits = []
    for silence in state.collection("silences").values():
        if _silence_state(silence, now) != "active":
            continue
        if all(
            _match(
                labels,
                m["name"],
                ("=" if m.get("isEqual", True) else "!=")
                if not m["isRegex"]
                else ("=~" if m.get("isEqual", True) else "!~"),
                m["value"],
            )
            for m in silence["matchers"]
        ):
            hits.append(silence["id"])
    return hits


@routes.route("POST", "/alerts")
async def post_alerts(req: SandboxRequest) -> Response:
    """Accept alerts (200, empty body); merge by label set."""
    state = req.state
    try:
        body = req.json()
    except VendorError:
        return _unparsable('parsing alerts body from "" failed, because invalid character')
    if not isinstance(body, list):
        return _unparsable(
            'parsing alerts body from "" failed, because json: cannot '
            "unmarshal object into Go value of type models.PostableAlerts"
        )
    now = _now()
    try:
        parsed = []
        for i, alert in enumerate(body):
            labels = alert.get("labels") if isinstance(alert, dict) else None
            if not isinstance(labels, dict):
                raise _Invalid(f"{i}.labels in body is required")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
                raise _Invalid(f"{i}.labels in body must be of type string")
            if not labels:
                raise _BadRequest("at least one label pair required")
            starts = _parse_time(alert.get("startsAt"), f"{i}.startsAt")
            ends = _parse_time(alert.get("endsAt"), f"{i}.endsAt")
            if starts and ends and ends < starts:
                raise _BadRequest("start time must be before end time")
            parsed.append((alert, labels, starts, ends))
    except _Invalid as exc:
        return _invalid(str(exc))
    except _BadRequest as exc:
        return _bad(str(exc))
    alerts = state.collection("alerts")
    for alert, labels, starts, ends in parsed:
        fp = _fingerprint(labels)
        existing = alerts.get(fp)
        start = starts or now
        end = ends or (now + RESOLVE_TIMEOUT)
        firing_until = _parse_time(existing["endsAt"], "endsAt") if existing else None
        if existing is not None and firing_until is not None and firing_until > now:
            # Still firing: Alertmanager keeps the alert's original start.
            start = min(start, _parse_time(existing["startsAt"], "startsAt") or start)
            existing["posts"] = existing.get("posts", 1) + 1
        record = {
            "labels": labels,
            "annotations": alert.get("annotations") or {},
            "startsAt": _iso(start),
            "endsAt": _iso(end),
            "updatedAt": _iso(now),
            "generatorURL": alert.get("generatorURL") or "",
            "fingerprint": fp,
            "receivers": [RECEIVER],
            "posts": existing.get("posts", 1) if existing else 1,
        }
        alerts[fp] = record
    return Response(status_code=200)


@routes.route("GET", "/alerts")
async def get_alerts(req: SandboxRequest) -> Response:
    """Alerts still firing, filtered by matchers and by active/silenced flags."""
    state = req.state
    try:
        matchers = _matchers(req.request.query_params.getlist("filter"))
    except _BadRequest as exc:
        return _bad(str(exc))
    want_active = req.query.get("active", "true") != "false"
    want_silenced = req.query.get("silenced", "true") != "false"
    now = _now()
    out = []
    for alert in state.collection("alerts").values():
        ends = _parse_time(alert["endsAt"], "endsAt")
        if ends is not None and ends <= now:
            continue
        if not all(_match(alert["labels"], *m) for m in matchers):
            continue
        silenced = _silenced_by(state, alert["labels"], now)
        if (silenced and not want_silenced) or (not silenced and not want_active):
            continue
        view = {k: v for k, v in alert.items() if k != "posts"}
        view["status"] = {
            "state": "suppressed" if silenced else "active",
            "silencedBy": silenced,
            "inhibitedBy": [],
        }
        out.append(view)
    return json_response(out)


@routes.route("POST", "/silences")
async def post_silence(req: SandboxRequest) -> Response:
    """Create (or replace, with ``id``) a silence: ``{"silenceID": ...}``."""
    state = req.state
    try:
        body = req.json()
    except VendorError:
        return _unparsable('parsing silence body from "" failed, because invalid character')
    if not isinstance(body, dict):
        return _unparsable(
            'parsing silence body from "" failed, because json: cannot '
            "unmarshal array into Go value of type models.PostableSilence"
        )
    for field in ("comment", "createdBy", "endsAt", "matchers", "startsAt"):
        if body.get(field) in (None, ""):
            return _invalid(f"{field} in body is required")
    matchers = body["matchers"]
    if not isinstance(matchers, list) or not matchers:
        return _invalid("matchers in body should have at least 1 items", 612)
    for i, m in enumerate(matchers):
        for key, kind in (("name", str), ("value", str), ("isRegex", bool)):
            if not isinstance(m, dict) or not isinstance(m.get(key), kind):
                return _invalid(f"matchers.{i}.{key} in body is required")
    try:
        starts = _parse_time(body["startsAt"], "startsAt")
        ends = _parse_time(body["endsAt"], "endsAt")
    except _Invalid as exc:
        return _invalid(str(exc))
    assert starts is not None and ends is not None
    now = _now()
    if ends <= starts:
        return _bad("Failed to create silence: start time must be before end time")
    if ends < now:
        return _bad("Failed to create silence: end time can't be in the past")
    silences = state.collection("silences")
    old_id = body.get("id")
    if old_id:
        old = silences.get(str(old_id))
        if old is None:
            return JSONResponse("silence not found", status_code=404)
        old["endsAt"] = _iso(min(now, _parse_time(old["endsAt"], "endsAt") or now))
    sid = str(uuid.uuid4())
    silences[sid] = {
        "id": sid,
        "matchers": [
            {
                "name": m["name"],
                "value": m["value"],
                "isRegex": m["isRegex"],
                "isEqual": m.get("isEqual", True),
            }
            for m in matchers
        ],
        "startsAt": _iso(max(starts, now) if starts < now else starts),
        "endsAt": _iso(ends),
        "createdBy": body["createdBy"],
        "comment": body["comment"],
        "updatedAt": _iso(now),
    }
    return json_response({"silenceID": sid})


def _silence_view(silence: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**silence, "status": {"state": _silence_state(silence, now)}}


@routes.route("GET", "/silences")
async def get_silences(req: SandboxRequest) -> Response:
    """Silences whose matchers include every ``filter`` matcher (as Alertmanager does)."""
    try:
        wanted = _matchers(req.request.query_params.getlist("filter"))
    except _BadRequest as exc:
        return _bad(str(exc))
    now = _now()
    out = []
    for silence in req.state.collection("silences").values():
        labels = {m["name"]: m["value"] for m in silence["matchers"] if not m["isRegex"]}
        if all(_match(labels, *m) for m in wanted):
            out.append(_silence_view(silence, now))
    return json_response(out)


@routes.route("GET", "/silence/{silence_id}")
async def get_silence(req: SandboxRequest) -> Response:
    """One silence."""
    silence = req.state.collection("silences").get(req.path_params["silence_id"])
    if silence is None:
        return Response(status_code=404)
    return json_response(_silence_view(silence, _now()))


@routes.route("DELETE", "/silence/{silence_id}")
async def delete_silence(req: SandboxRequest) -> Response:
    """Expire a silence."""
    silence = req.state.collection("silences").get(req.path_params["silence_id"])
    if silence is None:
        return Response(status_code=404)
    now = _now()
    if _silence_state(silence, now) != "expired":
        silence["endsAt"] = _iso(now)
    return Response(status_code=200)


@routes.route("GET", "/status")
async def status(req: SandboxRequest) -> Response:
    """Version, cluster, config, uptime (the health check)."""
    return json_response(
        {
            "cluster": {"name": "01SANDBOX", "status": "disabled", "peers": []},
            "versionInfo": {
                "version": "0.25.0",
                "revision": "sandbox",
                "branch": "HEAD",
                "buildUser": "junction",
                "buildDate": "20240101-00:00:00",
                "goVersion": "go1.21",
            },
            "config": {
                "original": "route:\n  receiver: junction-sandbox\nreceivers:\n"
                "- name: junction-sandbox\n"
            },
            "uptime": _iso(_STARTED),
        }
    )


@routes.route("GET", "/receivers")
async def receivers(req: SandboxRequest) -> Response:
    """Receivers."""
    return json_response([RECEIVER])
