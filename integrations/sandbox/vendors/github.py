"""Sandbox GitHub REST: the user, repositories, issues and Actions workflow runs.

Plays https://docs.github.com/en/rest: errors are ``{"message", "documentation_url"}``
(404 "Not Found" for an unknown repository; 422 "Validation Failed" with ``errors:
[{resource, field, code: "missing_field"}]`` for an issue without a title); issues are
numbered per repository and listed newest-first or oldest-first with ``state``,
``labels`` (all must match), ``sort``, ``direction``, ``per_page``/``page`` and a
``Link`` header; workflow runs filter on ``branch``, ``status`` (status or conclusion)
and ``event``. Collections: ``repos`` and ``workflow_runs`` (seeded), ``issues``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
    paginate,
)

routes = VendorRoutes("github")
routes.lists("repos", "full_name", "private")

DOCS = "https://docs.github.com/rest"
LOGIN = "sandbox-user"
SEED_REPOS = [("junction-org", "app", False), ("junction-org", "infra", True)]
_T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@routes.seeder("repos")
def seed(state: ServiceState, base: str = "") -> None:
    """Two repositories, each with a few workflow runs."""
    repos = state.collection("repos")
    runs = state.collection("workflow_runs")
    state.collection("issues")
    run_id = 9000
    for i, (owner, name, private) in enumerate(SEED_REPOS, start=1):
        full = f"{owner}/{name}"
        repos[full] = {
            "id": 100 + i,
            "node_id": f"R_sandbox{i}",
            "name": name,
            "full_name": full,
            "private": private,
            "owner": {"login": owner, "id": 10, "type": "Organization"},
            "html_url": f"https://github.com/{full}",
            "description": f"Sandbox repository {name}",
            "default_branch": "main",
            "open_issues_count": 0,
            "next_issue": 1,
            "created_at": _iso(_T0),
        }
        for n, (branch, event, status, conclusion, workflow) in enumerate(
            [
                ("main", "push", "completed", "success", (1, "CI", "ci.yml")),
                ("main", "push", "completed", "failure", (1, "CI", "ci.yml")),
                ("feature/x", "pull_request", "completed", "success", (1, "CI", "ci.yml")),
                ("main", "schedule", "in_progress", None, (2, "Nightly", "nightly.yml")),
                ("main", "workflow_dispatch", "queued", None, (3, "Deploy", "deploy.yml")),
            ],
            start=1,
        ):
            run_id += 1
            created = _T0 + timedelta(hours=n)
            wid, wname, wfile = workflow
            runs[str(run_id)] = {
                "id": run_id,
                "name": wname,
                "repo": full,
                "head_branch": branch,
                "head_sha": f"{run_id:040x}",
                "path": f".github/workflows/{wfile}",
                "run_number": n,
                "event": event,
                "status": status,
                "conclusion": conclusion,
                "workflow_id": 1000 * i + wid,
                "workflow_file": wfile,
                "html_url": f"https://github.com/{full}/actions/runs/{run_id}",
                "created_at": _iso(created),
                "updated_at": _iso(created + timedelta(minutes=5)),
            }


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _not_found() -> VendorError:
    return VendorError(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


def _repo(req: SandboxRequest) -> dict[str, Any]:
    full = f"{req.path_params['owner']}/{req.path_params['repo']}"
    repo = _state(req).collection("repos").get(full)
    if repo is None:
        raise _not_found()
    return repo


def _int(req: SandboxRequest, name: str, default: int, *, high: int = 100) -> int:
    try:
        return max(1, min(high, int(req.query.get(name, default))))
    except ValueError:
        raise VendorError(
            400, {"message": f"Invalid value for {name}", "documentation_url": DOCS}
        ) from None


def _public_repo(repo: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in repo.items() if k != "next_issue"}


@routes.route("GET", "/user")
async def get_user(req: SandboxRequest) -> Response:
    """The token's user (the health check)."""
    _state(req)
    return json_response(
        {
            "login": LOGIN,
            "id": 1,
            "type": "User",
            "name": "Sandbox User",
            "html_url": f"https://github.com/{LOGIN}",
        }
    )


@routes.route("GET", "/repos/{owner}/{repo}")
async def get_repo(req: SandboxRequest) -> Response:
    """A repository."""
    return json_response(_public_repo(_repo(req)))


@routes.route("POST", "/repos/{owner}/{repo}/issues")
async def create_issue(req: SandboxRequest) -> Response:
    """Create an issue (201); no title is 422 ``missing_field``."""
    state = _state(req)
    repo = _repo(req)
    body = req.json()
    if not isinstance(body, dict):
        raise VendorError(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
    title = body.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        raise VendorError(
            422,
            {
                "message": "Validation Failed",
                "documentation_url": DOCS,
                "status": "422",
                "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}],
            },
        )
    labels = body.get("labels") or []
    if not isinstance(labels, list):
        raise VendorError(
            422,
            {
                "message": "Invalid request.\n\nFor 'properties/labels', is not an array.",
                "documentation_url": DOCS,
            },
        )
    number = repo["next_issue"]
    repo["next_issue"] = number + 1
    repo["open_issues_count"] += 1
    now = _iso(datetime.now(UTC))
    full = repo["full_name"]
    issue_id = 500000 + int(state.next_id())
    issue = {
        "id": issue_id,
        "node_id": f"I_sandbox{issue_id}",
        "url": f"https://api.github.com/repos/{full}/issues/{number}",
        "html_url": f"https://github.com/{full}/issues/{number}",
        "number": number,
        "state": "open",
        "title": str(title),
        "body": body.get("body"),
        "user": {"login": LOGIN, "id": 1},
        "labels": [
            {"name": str(x if isinstance(x, str) else x.get("name")), "color": "ededed"}
            for x in labels
        ],
        "assignees": [{"login": str(a)} for a in body.get("assignees") or []],
        "comments": 0,
        "created_at": now,
        "updated_at": now,
        "closed_at": None,
        "repository": full,
    }
    state.collection("issues")[f"{full}#{number}"] = issue
    return json_response({k: v for k, v in issue.items() if k != "repository"}, status=201)


@routes.route("GET", "/repos/{owner}/{repo}/issues")
async def list_issues(req: SandboxRequest) -> Response:
    """List issues: ``state``, ``labels``, ``sort=created|updated``, ``direction``, pages."""
    state = _state(req)
    repo = _repo(req)
    wanted_state = req.query.get("state", "open")
    labels = {x.strip().lower() for x in req.query.get("labels", "").split(",") if x.strip()}
    issues = [
        {k: v for k, v in i.items() if k != "repository"}
        for i in state.collection("issues").values()
        if i["repository"] == repo["full_name"]
        and (wanted_state == "all" or i["state"] == wanted_state)
        and labels <= {lb["name"].lower() for lb in i["labels"]}
    ]
    key = "updated_at" if req.query.get("sort") == "updated" else "number"
    issues.sort(key=lambda i: i[key], reverse=req.query.get("direction", "desc") != "asc")
    per_page = _int(req, "per_page", 30)
    page_no = _int(req, "page", 1, high=10**6)
    page = paginate(issues, cursor=(page_no - 1) * per_page, limit=per_page)
    headers = {}
    if page.next_cursor is not None:
        next_url = req.request.url.include_query_params(page=page_no + 1)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return json_response(page.items, headers=headers)


def _runs(req: SandboxRequest, workflow: str | None) -> Response:
    state = _state(req)
    repo = _repo(req)
    runs = [r for r in state.collection("workflow_runs").values() if r["repo"] == repo["full_name"]]
    if workflow is not None:
        runs = [r for r in runs if workflow in (str(r["workflow_id"]), r["workflow_file"])]
        if not runs:
            raise _not_found()
    branch, status, event = (req.query.get(k) for k in ("branch", "status", "event"))
    if branch:
        runs = [r for r in runs if r["head_branch"] == branch]
    if status:
        runs = [r for r in runs if status in (r["status"], r["conclusion"])]
    if event:
        runs = [r for r in runs if r["event"] == event]
    runs.sort(key=lambda r: r["created_at"], reverse=True)
    per_page = _int(req, "per_page", 30)
    page_no = _int(req, "page", 1, high=10**6)
    page = paginate(runs, cursor=(page_no - 1) * per_page, limit=per_page)
    return json_response(
        {
            "total_count": page.total,
            "workflow_runs": [
                {k: v for k, v in r.items() if k not in ("repo", "workflow_file")}
                for r in page.items
            ],
        }
    )


@routes.route("GET", "/repos/{owner}/{repo}/actions/runs")
async def list_runs(req: SandboxRequest) -> Response:
    """Workflow runs of a repository, newest first."""
    return _runs(req, None)


@routes.route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs")
async def list_workflow_runs(req: SandboxRequest) -> Response:
    """Runs of one workflow (by id or file name)."""
    return _runs(req, req.path_params["workflow_id"])
