"""Sandbox Jira Cloud (REST v3): issues, comments, transitions, JQL search, myself.

Plays https://developer.atlassian.com/cloud/jira/platform/rest/v3/: errors are
``{"errorMessages": [...], "errors": {field: message}}``; ``description`` and comment
bodies must be Atlassian Document Format (a plain string is 400, as in v3); labels may
not contain spaces; an unknown project or issue type is 400; a missing issue is 404
"Issue does not exist or you do not have permission to see it."; transitions follow a
simplified workflow (To Do / In Progress / Done, each reachable from the others).
``GET /rest/api/3/search/jql`` understands a small JQL subset: ``field = value``,
``field != value`` and ``field in (a, b)`` joined by ``AND`` over project, key, labels,
status, issuetype and summary (``~`` contains). Comments keep their ``properties``
(entity properties, shown with ``expand=properties``); ``GET .../comment`` lists an
issue's comments with ``startAt``/``maxResults`` paging and ``orderBy`` ``created`` /
``-created``. Collections: ``projects`` (seeded OPS, JUN), ``issues`` (by key),
``comments``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
)

routes = VendorRoutes("jira")
routes.lists("projects", "key", "name")

ISSUE_TYPES = {
    "task": ("10001", "Task"),
    "bug": ("10002", "Bug"),
    "story": ("10003", "Story"),
    "incident": ("10004", "Incident"),
    "epic": ("10005", "Epic"),
}
STATUSES = {"11": ("10000", "To Do"), "21": ("10001", "In Progress"), "31": ("10002", "Done")}
ACCOUNT_ID = "5b10a2844c20165700ede21g"


@routes.seeder("projects")
def seed(state: ServiceState, base: str = "") -> None:
    """Two projects."""
    projects = state.collection("projects")
    for pid, key, name in (("10000", "OPS", "Operations"), ("10001", "JUN", "Junction")):
        projects[key] = {"id": pid, "key": key, "name": name, "next": 1}
    state.collection("issues")
    state.collection("comments")


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _base(req: SandboxRequest) -> str:
    url = req.request.url
    cut = url.path.find("/rest/api/")
    return f"{url.scheme}://{url.netloc}{url.path[:cut] if cut >= 0 else ''}"


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def _bad(message: str | None = None, **errors: str) -> VendorError:
    return VendorError(400, {"errorMessages": [message] if message else [], "errors": errors})


def _not_found() -> VendorError:
    return VendorError(
        404,
        {
            "errorMessages": ["Issue does not exist or you do not have permission to see it."],
            "errors": {},
        },
    )


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and "content" in value


def _issue(state: ServiceState, ref: str) -> dict[str, Any]:
    issues = state.collection("issues")
    if ref.upper() in issues:
        return issues[ref.upper()]
    for issue in issues.values():
        if issue["id"] == ref:
            return issue
    raise _not_found()


def _view(issue: dict[str, Any], base: str, fields: str | None) -> dict[str, Any]:
    wanted = (
        None
        if not fields or fields in ("*all", "*navigable")
        else {f.strip() for f in fields.split(",") if f.strip()}
    )
    shown = {k: v for k, v in issue["fields"].items() if wanted is None or k in wanted}
    return {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog",
        "id": issue["id"],
        "key": issue["key"],
        "self": f"{base}/rest/api/3/issue/{issue['id']}",
        "fields": shown,
    }


# --- issues -------------------------------------------------------------------------------


@routes.route("POST", "/rest/api/3/issue")
async def create_issue(req: SandboxRequest) -> Response:
    """Create an issue (201 ``{id, key, self}``)."""
    state = _state(req)
    body = req.json()
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        raise _bad("Request body must contain 'fields' or 'update'.")
    errors: dict[str, str] = {}
    project_ref = _obj(fields.get("project"))
    project = state.collection("projects").get(str(project_ref.get("key", "")).upper())
    if project is None:
        project = next(
            (
                p
                for p in state.collection("projects").values()
                if p["id"] == str(project_ref.get("id", ""))
            ),
            None,
        )
    if project is None:
        errors["project"] = "valid project is required"
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > 255:
        errors["summary"] = "Summary must be less than 255 characters."
    itype_ref = _obj(fields.get("issuetype"))
    itype = ISSUE_TYPES.get(str(itype_ref.get("name", "")).lower()) or next(
        (t for t in ISSUE_TYPES.values() if t[0] == str(itype_ref.get("id", ""))), None
    )
    if itype is None:
        errors["issuetype"] = "Specify a valid issue type"
    description = fields.get("description")
    if description is not None and not _is_adf(description):
        errors["description"] = (
            "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        )
    labels = fields.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        errors["labels"] = "Labels must be a list of strings"
    else:
        bad = [x for x in labels if not x or re.search(r"\s", x)]
        if bad:
            errors["labels"] = f"The label '{bad[0]}' contains spaces which is invalid."
    if errors:
        raise _bad(**errors)
    assert project is not None and itype is not None
    number = project["next"]
    project["next"] = number + 1
    key = f"{project['key']}-{number}"
    issue_id = str(10000 + int(state.next_id()))
    now = _now()
    state.collection("issues")[key] = {
        "id": issue_id,
        "key": key,
        "fields": {
            "summary": summary,
            "description": description,
            "labels": list(dict.fromkeys(labels)),
            "issuetype": {"id": itype[0], "name": itype[1]},
            "project": {"id": project["id"], "key": project["key"], "name": project["name"]},
            "status": {"id": STATUSES["11"][0], "name": STATUSES["11"][1]},
            "created": now,
            "updated": now,
            "reporter": {"accountId": ACCOUNT_ID, "displayName": "Sandbox User"},
        },
    }
    base = _base(req)
    return json_response(
        {"id": issue_id, "key": key, "self": f"{base}/rest/api/3/issue/{issue_id}"}, status=201
    )


@routes.route("GET", "/rest/api/3/issue/{issue}")
async def get_issue(req: SandboxRequest) -> Response:
    """Read an issue (``fields`` selects fields)."""
    issue = _issue(_state(req), req.path_params["issue"])
    return json_response(_view(issue, _base(req), req.query.get("fields")))


def _properties(value: Any) -> list[dict[str, Any]]:
    """A comment's ``properties`` (``[{key, value}]``), or 400 as Jira answers."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad("Can not deserialize properties: expected an array.")
    found: list[dict[str, Any]] = []
    for prop in value:
        key = prop.get("key") if isinstance(prop, dict) else None
        if not isinstance(key, str) or not key or len(key) > 255:
            raise _bad("The property key must be between 1 and 255 characters long.")
        if "value" not in prop:
            raise _bad(f"The property '{key}' has no value.")
        found.append({"key": key, "value": prop["value"]})
    return found


def _comment_view(comment: dict[str, Any], expand: str | None) -> dict[str, Any]:
    expanded = {e.strip() for e in (expand or "").split(",")}
    skip = {"issue"} if "properties" in expanded else {"issue", "properties"}
    return {k: v for k, v in comment.items() if k not in skip}


@routes.route("POST", "/rest/api/3/issue/{issue}/comment")
async def add_comment(req: SandboxRequest) -> Response:
    """Add an ADF comment, with its entity properties (201)."""
    state = _state(req)
    issue = _issue(state, req.path_params["issue"])
    body = req.json()
    text = body.get("body") if isinstance(body, dict) else None
    if text is None:
        raise _bad(comment="Comment body can not be empty!")
    if not _is_adf(text):
        raise _bad("Comment body is not valid!")
    properties = _properties(body.get("properties"))
    cid = str(10000 + int(state.next_id()))
    now = _now()
    comment = {
        "id": cid,
        "self": f"{_base(req)}/rest/api/3/issue/{issue['id']}/comment/{cid}",
        "author": {"accountId": ACCOUNT_ID, "displayName": "Sandbox User"},
        "body": text,
        "created": now,
        "updated": now,
        "jsdPublic": True,
        "properties": properties,
        "issue": issue["key"],
    }
    state.collection("comments")[cid] = comment
    return json_response(_comment_view(comment, req.query.get("expand")), status=201)


@routes.route("GET", "/rest/api/3/issue/{issue}/comment")
async def list_comments(req: SandboxRequest) -> Response:
    """An issue's comments (``PageOfComments``), oldest first unless ``orderBy=-created``."""
    state = _state(req)
    issue = _issue(state, req.path_params["issue"])
    try:
        start = int(req.query.get("startAt", "0"))
        limit = int(req.query.get("maxResults", "5000"))
    except ValueError:
        raise _bad("Invalid startAt or maxResults") from None
    if start < 0 or limit < 0:
        raise _bad("startAt and maxResults must not be negative")
    order = req.query.get("orderBy", "created")
    if order.lstrip("+-") != "created":
        raise _bad(f"Invalid orderBy '{order}': comments can be ordered by created only.")
    comments = [c for c in state.collection("comments").values() if c["issue"] == issue["key"]]
    comments.sort(key=lambda c: (c["created"], int(c["id"])), reverse=order.startswith("-"))
    limit = min(limit, 5000)
    page = comments[start : start + limit]
    expand = req.query.get("expand")
    return json_response(
        {
            "startAt": start,
            "maxResults": limit,
            "total": len(comments),
            "comments": [_comment_view(c, expand) for c in page],
        }
    )


def _transitions(issue: dict[str, Any]) -> list[dict[str, Any]]:
    current = issue["fields"]["status"]["id"]
    return [
        {
            "id": tid,
            "name": name,
            "hasScreen": False,
            "isGlobal": True,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "to": {
                "id": sid,
                "name": name,
                "statusCategory": {
                    "key": "done" if tid == "31" else "indeterminate" if tid == "21" else "new"
                },
            },
        }
        for tid, (sid, name) in STATUSES.items()
        if sid != current
    ]


@routes.route("GET", "/rest/api/3/issue/{issue}/transitions")
async def list_transitions(req: SandboxRequest) -> Response:
    """The transitions available from the issue's status."""
    issue = _issue(_state(req), req.path_params["issue"])
    return json_response({"expand": "transitions", "transitions": _transitions(issue)})


@routes.route("POST", "/rest/api/3/issue/{issue}/transitions")
async def do_transition(req: SandboxRequest) -> Response:
    """Perform a transition (204); an unavailable one is 400."""
    issue = _issue(_state(req), req.path_params["issue"])
    body = req.json()
    transition = body.get("transition") if isinstance(body, dict) else None
    tid = str(transition.get("id", "")) if isinstance(transition, dict) else ""
    available = {t["id"]: t for t in _transitions(issue)}
    if tid not in available:
        raise _bad(f"Transition id '{tid}' is not valid for this issue.")
    target = available[tid]["to"]
    issue["fields"]["status"] = {"id": target["id"], "name": target["name"]}
    issue["fields"]["updated"] = _now()
    return Response(status_code=204)


# --- search -------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r'^\s*(?P<field>[A-Za-z]+)\s*(?P<op>!=|=|~|in)\s*(?P<value>"(?:[^"\\]|\\.)*"|\([^)]*\)|[^\s"()]+)\s*$',
    re.IGNORECASE,
)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _field_values(issue: dict[str, Any], field: str) -> list[str]:
    fields = issue["fields"]
    if field == "project":
        return [fields["project"]["key"].lower(), fields["project"]["id"]]
    if field in ("key", "issuekey"):
        return [issue["key"].lower(), issue["id"]]
    if field == "labels":
        return [x.lower() for x in fields["labels"]]
    if field == "status":
        return [fields["status"]["name"].lower()]
    if field in ("issuetype", "type"):
        return [fields["issuetype"]["name"].lower()]
    if field == "summary":
        return [fields["summary"].lower()]
    raise _bad(f"Field '{field}' does not exist or this field cannot be viewed by anonymous users.")


def _matches(issue: dict[str, Any], jql: str) -> bool:
    body = re.split(r"\s+order\s+by\s+", jql, flags=re.IGNORECASE)[0].strip()
    if not body:
        return True
    for clause in re.split(r"\s+AND\s+", body, flags=re.IGNORECASE):
        m = _CLAUSE.match(clause)
        if m is None:
            raise _bad(f"Error in the JQL Query: unsupported clause '{clause.strip()}'.")
        field, op = m["field"].lower(), m["op"].lower()
        values = _field_values(issue, field)
        raw = m["value"]
        if op == "in":
            wanted = [_unquote(v).lower() for v in raw.strip("()").split(",") if v.strip()]
            if not any(w in values for w in wanted):
                return False
        elif op == "~":
            if not any(_unquote(raw).lower() in v for v in values):
                return False
        else:
            hit = _unquote(raw).lower() in values
            if hit != (op == "="):
                return False
    return True


@routes.route("GET", "/rest/api/3/search/jql")
async def search(req: SandboxRequest) -> Response:
    """Search issues by JQL (token pagination: ``nextPageToken`` is an offset)."""
    state = _state(req)
    jql = req.query.get("jql", "")
    try:
        limit = max(1, min(5000, int(req.query.get("maxResults", "50"))))
        start = int(req.query.get("nextPageToken") or 0)
    except ValueError:
        raise _bad("Invalid maxResults or nextPageToken") from None
    hits = [i for i in state.collection("issues").values() if _matches(i, jql)]
    hits.sort(key=lambda i: int(i["id"]), reverse=True)  # newest first (created DESC)
    page = hits[start : start + limit]
    base = _base(req)
    answer: dict[str, Any] = {
        "issues": [_view(i, base, req.query.get("fields") or "id") for i in page],
        "isLast": start + limit >= len(hits),
    }
    if not answer["isLast"]:
        answer["nextPageToken"] = str(start + limit)
    return json_response(answer)


@routes.route("GET", "/rest/api/3/myself")
async def myself(req: SandboxRequest) -> Response:
    """The authenticated user (the health check)."""
    _state(req)
    return json_response(
        {
            "self": f"{_base(req)}/rest/api/3/user?accountId={ACCOUNT_ID}",
            "accountId": ACCOUNT_ID,
            "accountType": "atlassian",
            "emailAddress": "sandbox-user@example.com",
            "displayName": "Sandbox User",
            "active": True,
            "timeZone": "Europe/London",
            "locale": "en_GB",
        }
    )
