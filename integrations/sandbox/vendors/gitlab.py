"""Sandbox GitLab: projects, pipelines (+ variables), jobs and their traces, issues,
members and users, under the API base path ``/api/v4``.

Plays the GitLab REST API v4 (https://docs.gitlab.com/ee/api/rest/): ``{"message": ...}``
error bodies, offset pagination with ``page``/``per_page`` and the ``X-Page``,
``X-Per-Page``, ``X-Total``, ``X-Total-Pages``, ``X-Next-Page``, ``X-Prev-Page`` headers,
projects addressed by id or URL-encoded full path, 409 "Member already exists", and
``POST /users/:id/block`` succeeding for an already blocked user, ``GET /users``
(``username``, ``search``) and ``POST /users`` (409 when the username or email is
taken; users carry ``email``, shown to the admin token). Seeded: projects
``acme/backend`` (id 1, 25 pipelines, pipeline 1001 failed with a failed ``test`` job
whose trace ends in an assertion error) and ``acme/frontend`` (id 2); users 1
``junction-bot`` (the token's user, an admin), 2 ``alice``, 3 ``bob``, 4 ``mallory``,
5 ``eve`` (blocked). Collections: ``projects``, ``pipelines``, ``pipeline_variables``,
``jobs``, ``traces``, ``issues``, ``members``, ``users``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import PlainTextResponse, Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
)

routes = VendorRoutes("gitlab")
routes.lists("projects", "id", "path_with_namespace")
routes.lists("pipelines", "id", "project_id", "ref", "status")

BOT_USER_ID = 1
FAILED_PIPELINE_ID = 1001
FAILED_JOB_ID = 5002
BRANCHES = ("main", "develop", "feature-x")
ACCESS_LEVELS = (0, 5, 10, 15, 20, 30, 40, 50)
_T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

FAILED_TRACE = "\n".join(
    [
        "\x1b[0KRunning with gitlab-runner 17.0.0 (sandbox)",
        "\x1b[0K  on sandbox-runner abc123",
        "Preparing the docker executor",
        "Using docker image python:3.11 ...",
        "$ pip install -r requirements.txt",
        "Successfully installed 42 packages",
        "$ pytest -q",
        "........F.....",
        "FAILED tests/test_api.py::test_create_user - AssertionError: expected 201, got 500",
        "1 failed, 13 passed in 3.21s",
        "Cleaning up project directory and file based variables",
        "ERROR: Job failed: exit code 1",
    ]
)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(UTC))


def _msg(status: int, message: Any) -> VendorError:
    return VendorError(status, {"message": message})


def _user_obj(
    uid: int, username: str, name: str, state: str, admin: bool = False
) -> dict[str, Any]:
    return {
        "id": uid,
        "username": username,
        "name": name,
        "state": state,
        "locked": False,
        "avatar_url": None,
        "web_url": f"https://gitlab.example.com/{username}",
        "is_admin": admin,
        "email": f"{username}@example.com",
        "public_email": None,
    }


def _pipeline(
    pid: int, iid: int, project_id: int, status: str, ref: str, source: str, when: str
) -> dict[str, Any]:
    return {
        "id": pid,
        "iid": iid,
        "project_id": project_id,
        "sha": f"{pid:040x}",
        "ref": ref,
        "status": status,
        "source": source,
        "created_at": when,
        "updated_at": when,
        "web_url": f"https://gitlab.example.com/acme/backend/-/pipelines/{pid}",
    }


def _job(jid: int, pipeline: dict[str, Any], name: str, stage: str, status: str) -> dict[str, Any]:
    failed = status == "failed"
    return {
        "id": jid,
        "name": name,
        "stage": stage,
        "status": status,
        "ref": pipeline["ref"],
        "tag": False,
        "allow_failure": False,
        "created_at": pipeline["created_at"],
        "started_at": pipeline["created_at"] if status not in ("created", "skipped") else None,
        "finished_at": pipeline["updated_at"] if status in ("success", "failed") else None,
        "duration": 42.5 if status in ("success", "failed") else None,
        "failure_reason": "script_failure" if failed else None,
        "web_url": f"https://gitlab.example.com/acme/backend/-/jobs/{jid}",
        "pipeline": {k: pipeline[k] for k in ("id", "project_id", "ref", "sha", "status")},
        "retried": False,
    }


@routes.seeder("projects")
def seed(state: ServiceState, base: str = "") -> None:
    """Fill an empty state (projects, users, pipelines, jobs, a failed trace)."""
    projects = state.collection("projects")
    for pid, path in ((1, "acme/backend"), (2, "acme/frontend")):
        projects[str(pid)] = {
            "id": pid,
            "name": path.split("/")[1],
            "path": path.split("/")[1],
            "path_with_namespace": path,
            "name_with_namespace": path.replace("/", " / "),
            "default_branch": "main",
            "web_url": f"https://gitlab.example.com/{path}",
            "visibility": "private",
            "created_at": _iso(_T0 - timedelta(days=365)),
        }
    users = state.collection("users")
    for uid, username, name, st in (
        (1, "junction-bot", "Junction Bot", "active"),
        (2, "alice", "Alice Example", "active"),
        (3, "bob", "Bob Example", "active"),
        (4, "mallory", "Mallory Example", "active"),
        (5, "eve", "Eve Example", "blocked"),
    ):
        users[str(uid)] = _user_obj(uid, username, name, st, admin=uid == BOT_USER_ID)
    members = state.collection("members")
    members["1:2"] = {
        **_user_obj(2, "alice", "Alice Example", "active"),
        "project_id": 1,
        "access_level": 40,
        "expires_at": None,
        "created_at": _iso(_T0),
    }
    pipelines = state.collection("pipelines")
    jobs = state.collection("jobs")
    traces = state.collection("traces")
    state.collection("pipeline_variables")
    state.collection("issues")
    statuses = ("success", "success", "failed", "success", "running", "canceled")
    for n in range(25):
        pid = FAILED_PIPELINE_ID - n
        status = "failed" if n == 0 else statuses[n % len(statuses)]
        ref = BRANCHES[n % 2] if n else "main"
        when = _iso(_T0 - timedelta(hours=n))
        pipelines[str(pid)] = _pipeline(pid, 100 - n, 1, status, ref, "push", when)
    failed = pipelines[str(FAILED_PIPELINE_ID)]
    for jid, name, stage, status in (
        (5001, "build", "build", "success"),
        (FAILED_JOB_ID, "test", "test", "failed"),
        (5003, "lint", "test", "success"),
        (5004, "deploy", "deploy", "skipped"),
    ):
        job = _job(jid, failed, name, stage, status)
        job["project_id"] = 1
        jobs[str(jid)] = job
    traces[str(FAILED_JOB_ID)] = {"job_id": FAILED_JOB_ID, "text": FAILED_TRACE}
    traces["5001"] = {"job_id": 5001, "text": "$ make build\nbuild ok\nJob succeeded"}


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _project(req: SandboxRequest) -> dict[str, Any]:
    ref = req.path_params["project_id"]
    projects = _state(req).collection("projects")
    if ref in projects:
        return projects[ref]
    for project in projects.values():
        if project["path_with_namespace"] == ref:
            return project
    raise _msg(404, "404 Project Not Found")


def _int(value: str | None, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise _msg(400, f"{name} is invalid") from None


def _paged(req: SandboxRequest, items: list[Any]) -> Response:
    """GitLab offset pagination: the page plus its X-* headers."""
    page = max(1, _int(req.query.get("page"), "page", 1))
    per_page = min(100, max(1, _int(req.query.get("per_page"), "per_page", 20)))
    total = len(items)
    pages = max(1, -(-total // per_page))
    start = (page - 1) * per_page
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Total": str(total),
        "X-Total-Pages": str(pages),
        "X-Next-Page": str(page + 1) if page < pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
    }
    return json_response(items[start : start + per_page], headers=headers)


def _public(obj: dict[str, Any], *hidden: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in hidden}


# --- users --------------------------------------------------------------------------------


@routes.route("GET", "/user")
async def current_user(req: SandboxRequest) -> Response:
    """The token's user (health check)."""
    return json_response(_state(req).collection("users")[str(BOT_USER_ID)])


@routes.route("GET", "/users")
async def list_users(req: SandboxRequest) -> Response:
    """Users: ``username`` exact, ``search`` in name, username or email (admins see email)."""
    users = list(_state(req).collection("users").values())
    username = req.query.get("username")
    if username:
        users = [u for u in users if u["username"].lower() == username.lower()]
    search = (req.query.get("search") or "").lower()
    if search:
        users = [
            u
            for u in users
            if search in u["username"].lower()
            or search in (u["name"] or "").lower()
            or search in (u.get("email") or "").lower()
        ]
    return _paged(req, users)


@routes.route("POST", "/users")
async def create_user(req: SandboxRequest) -> Response:
    """Create a user (admins only); 409 when the username or email is taken."""
    users = _state(req).collection("users")
    if not users[str(BOT_USER_ID)]["is_admin"]:
        raise _msg(403, "403 Forbidden")
    body = req.json() or {}
    missing = [k for k in ("email", "username", "name") if not body.get(k)]
    if missing:
        raise VendorError(400, {"error": f"{', '.join(missing)} is missing"})
    if not (
        body.get("password") or body.get("reset_password") or body.get("force_random_password")
    ):
        raise VendorError(
            400,
            {
                "error": "password, reset_password, force_random_password are missing, "
                "at least one parameter must be provided"
            },
        )
    for user in users.values():
        if user["username"].lower() == str(body["username"]).lower():
            raise _msg(409, "Username has already been taken")
        if (user.get("email") or "").lower() == str(body["email"]).lower():
            raise _msg(409, "Email has already been taken")
    uid = max(int(k) for k in users) + 1
    user = _user_obj(uid, str(body["username"]), str(body["name"]), "active")
    user["email"] = str(body["email"])
    user["external"] = bool(body.get("external", False))
    users[str(uid)] = user
    return json_response(user, status=201)


@routes.route("GET", "/users/{user_id:int}")
async def get_user(req: SandboxRequest) -> Response:
    """One user."""
    user = _state(req).collection("users").get(str(req.path_params["user_id"]))
    if user is None:
        raise _msg(404, "404 User Not Found")
    return json_response(user)


@routes.route("POST", "/users/{user_id:int}/block")
async def block_user(req: SandboxRequest) -> Response:
    """Block (admins only); blocking a blocked user succeeds, as in GitLab."""
    users = _state(req).collection("users")
    if not users[str(BOT_USER_ID)]["is_admin"]:
        raise _msg(403, "403 Forbidden")
    uid = req.path_params["user_id"]
    user = users.get(str(uid))
    if user is None:
        raise _msg(404, "404 User Not Found")
    if uid == BOT_USER_ID:
        raise _msg(403, "403 Forbidden - The API initiating user cannot be blocked by the API")
    if user["state"] == "blocked":
        return json_response(None, status=201)
    user["state"] = "blocked"
    return json_response(True, status=201)


# --- projects and pipelines ------------------------------------------------------------------


@routes.route("GET", "/projects/{project_id:path}/pipelines/{pipeline_id:int}/variables")
async def pipeline_variables(req: SandboxRequest) -> Response:
    """Variables a pipeline was created with."""
    pipeline = _pipeline_of(req)
    found = [
        _public(v, "pipeline_id")
        for v in _state(req).collection("pipeline_variables").values()
        if v["pipeline_id"] == pipeline["id"]
    ]
    return json_response(found)


@routes.route("GET", "/projects/{project_id:path}/pipelines/{pipeline_id:int}/jobs")
async def pipeline_jobs(req: SandboxRequest) -> Response:
    """A pipeline's jobs, ``scope``/``scope[]`` filtering by status."""
    pipeline = _pipeline_of(req)
    scopes = req.request.query_params.getlist("scope[]") + req.request.query_params.getlist("scope")
    found = [
        _public(j, "project_id")
        for j in _state(req).collection("jobs").values()
        if j["pipeline"]["id"] == pipeline["id"] and (not scopes or j["status"] in scopes)
    ]
    found.sort(key=lambda j: -j["id"])
    return _paged(req, found)


def _pipeline_of(req: SandboxRequest) -> dict[str, Any]:
    project = _project(req)
    pipeline = _state(req).collection("pipelines").get(str(req.path_params["pipeline_id"]))
    if pipeline is None or pipeline["project_id"] != project["id"]:
        raise _msg(404, "404 Not found")
    return pipeline


@routes.route("GET", "/projects/{project_id:path}/pipelines/{pipeline_id:int}")
async def get_pipeline(req: SandboxRequest) -> Response:
    """One pipeline."""
    return json_response(_pipeline_of(req))


def _parse_time(value: str, name: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _msg(400, f"{name} is invalid") from None


@routes.route("GET", "/projects/{project_id:path}/pipelines")
async def list_pipelines(req: SandboxRequest) -> Response:
    """Pipelines, newest first; ``status``/``ref``/``source``/``created_after`` filters."""
    project = _project(req)
    q = req.query
    found = [
        p for p in _state(req).collection("pipelines").values() if p["project_id"] == project["id"]
    ]
    for key in ("status", "ref", "source"):
        if q.get(key):
            found = [p for p in found if p[key] == q[key]]
    if q.get("created_after"):
        after = _parse_time(q["created_after"], "created_after")
        found = [p for p in found if _parse_time(p["created_at"], "created_at") >= after]
    found.sort(key=lambda p: p["id"], reverse=q.get("sort", "desc") != "asc")
    return _paged(req, found)


@routes.route("POST", "/projects/{project_id:path}/pipeline")
async def create_pipeline(req: SandboxRequest) -> Response:
    """Create a pipeline for a ref (with variables and three jobs)."""
    state = _state(req)
    project = _project(req)
    body = req.json() or {}
    ref = body.get("ref")
    if not ref:
        raise _msg(400, "ref is missing")
    if ref not in BRANCHES:
        raise _msg(400, {"base": ["Reference not found"]})
    pipelines = state.collection("pipelines")
    pid = max(int(k) for k in pipelines) + 1 if pipelines else 2001
    iid = 1 + max(
        (p["iid"] for p in pipelines.values() if p["project_id"] == project["id"]), default=0
    )
    pipeline = _pipeline(pid, iid, project["id"], "created", ref, "api", _now())
    pipeline["user"] = _public(state.collection("users")[str(BOT_USER_ID)], "is_admin")
    pipelines[str(pid)] = pipeline
    variables = state.collection("pipeline_variables")
    for var in body.get("variables") or []:
        if not isinstance(var, dict) or not var.get("key"):
            raise _msg(400, "variables is invalid")
        variables[state.next_id("var")] = {
            "pipeline_id": pid,
            "key": var["key"],
            "value": str(var.get("value", "")),
            "variable_type": var.get("variable_type", "env_var"),
        }
    jobs = state.collection("jobs")
    next_job = max((int(k) for k in jobs), default=5000) + 1
    for offset, (name, stage) in enumerate(
        (("build", "build"), ("test", "test"), ("deploy", "deploy"))
    ):
        job = _job(next_job + offset, pipeline, name, stage, "created")
        job["project_id"] = project["id"]
        jobs[str(job["id"])] = job
    return json_response(pipeline, status=201)


@routes.route("GET", "/projects/{project_id:path}/jobs/{job_id:int}/trace")
async def job_trace(req: SandboxRequest) -> Response:
    """A job's log as plain text (empty for a job that has not run)."""
    project = _project(req)
    state = _state(req)
    job = state.collection("jobs").get(str(req.path_params["job_id"]))
    if job is None or job["project_id"] != project["id"]:
        raise _msg(404, "404 Job Not Found")
    trace = state.collection("traces").get(str(job["id"]))
    return PlainTextResponse(trace["text"] if trace else "")


# --- issues -------------------------------------------------------------------------------


@routes.route("GET", "/projects/{project_id:path}/issues/{issue_iid:int}")
async def get_issue(req: SandboxRequest) -> Response:
    """One issue by its project-internal iid."""
    project = _project(req)
    for issue in _state(req).collection("issues").values():
        if issue["project_id"] == project["id"] and issue["iid"] == req.path_params["issue_iid"]:
            return json_response(issue)
    raise _msg(404, "404 Not found")


@routes.route("GET", "/projects/{project_id:path}/issues")
async def list_issues(req: SandboxRequest) -> Response:
    """Issues, newest first; ``state`` and ``search`` (``in=title`` or title+description)."""
    project = _project(req)
    q = req.query
    found = [
        i for i in _state(req).collection("issues").values() if i["project_id"] == project["id"]
    ]
    if q.get("state") in ("opened", "closed"):
        found = [i for i in found if i["state"] == q["state"]]
    if q.get("search"):
        needle = q["search"].lower()
        fields = ("title",) if q.get("in") == "title" else ("title", "description")
        found = [i for i in found if any(needle in (i.get(f) or "").lower() for f in fields)]
    found.sort(key=lambda i: -i["id"])
    return _paged(req, found)


@routes.route("POST", "/projects/{project_id:path}/issues")
async def create_issue(req: SandboxRequest) -> Response:
    """Open an issue (no uniqueness: GitLab happily creates duplicates)."""
    state = _state(req)
    project = _project(req)
    body = req.json() or {}
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _msg(400, "title is missing")
    issues = state.collection("issues")
    iid = 1 + max(
        (i["iid"] for i in issues.values() if i["project_id"] == project["id"]), default=0
    )
    issue_id = 9000 + len(issues) + 1
    labels = body.get("labels") or []
    if isinstance(labels, str):
        labels = [x.strip() for x in labels.split(",") if x.strip()]
    when = _now()
    issue = {
        "id": issue_id,
        "iid": iid,
        "project_id": project["id"],
        "title": title,
        "description": body.get("description"),
        "state": "opened",
        "labels": labels,
        "assignees": [],
        "author": _public(state.collection("users")[str(BOT_USER_ID)], "is_admin"),
        "confidential": bool(body.get("confidential", False)),
        "created_at": when,
        "updated_at": when,
        "web_url": f"{project['web_url']}/-/issues/{iid}",
    }
    issues[str(issue_id)] = issue
    return json_response(issue, status=201)


# --- members ------------------------------------------------------------------------------


@routes.route("GET", "/projects/{project_id:path}/members/{user_id:int}")
async def get_member(req: SandboxRequest) -> Response:
    """One direct member."""
    project = _project(req)
    member = _state(req).collection("members").get(f"{project['id']}:{req.path_params['user_id']}")
    if member is None:
        raise _msg(404, "404 Not found")
    return json_response(_public(member, "project_id"))


@routes.route("GET", "/projects/{project_id:path}/members")
async def list_members(req: SandboxRequest) -> Response:
    """Direct members."""
    project = _project(req)
    found = [
        _public(m, "project_id")
        for m in _state(req).collection("members").values()
        if m["project_id"] == project["id"]
    ]
    return _paged(req, found)


@routes.route("POST", "/projects/{project_id:path}/members")
async def add_member(req: SandboxRequest) -> Response:
    """Add a member; 409 "Member already exists" for a repeat."""
    state = _state(req)
    project = _project(req)
    body = req.json() or {}
    uid = body.get("user_id")
    level = body.get("access_level")
    if uid is None:
        raise _msg(400, "user_id is missing")
    if level is None:
        raise _msg(400, "access_level is missing")
    if level not in ACCESS_LEVELS:
        raise _msg(400, {"access_level": ["is not included in the list"]})
    user = state.collection("users").get(str(uid))
    if user is None:
        raise _msg(404, "404 User Not Found")
    members = state.collection("members")
    key = f"{project['id']}:{uid}"
    if key in members:
        raise _msg(409, "Member already exists")
    member = {
        **_public(user, "is_admin", "email"),
        "project_id": project["id"],
        "access_level": level,
        "expires_at": body.get("expires_at"),
        "created_at": _now(),
    }
    members[key] = member
    return json_response(_public(member, "project_id"), status=201)


# Registered last: ``{project_id:path}`` alone would also match the nested routes above.
@routes.route("GET", "/projects/{project_id:path}")
async def get_project(req: SandboxRequest) -> Response:
    """One project, by id or URL-encoded full path."""
    return json_response(_project(req))
