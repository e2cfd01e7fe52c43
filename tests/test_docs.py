"""The documents in docs/: every ```sh command runs, and the API reference is current.

Each command in a ```sh block of docs/*.md runs once (a command repeated in another
document is not run again), in document order, with `junction` on PATH, against a
temporary JUNCTION_HOME per document and the session sandbox, offline (no Prefect server,
no LLM), in a scratch copy of the repository root (its entries symlinked, so files the
commands write land in the scratch folder). Documents run side by side, each document's commands one
after another (later commands may use what earlier ones wrote).

A fenced block opened as ```` ```yaml file=NAME ```` is written to NAME in the scratch
folder before the document's commands run (the text shows a file, a command uses it).

Markers at the end of a command line:
- ``# exit N``: the command is expected to exit with status N (the error it shows is
  what the text explains).
- ``# not run: REASON``: a server or a long wait; the reason is required. Only parsed:
  a `junction`/`prefect` command runs with ``--help`` appended (so its subcommand and
  options must exist), a `make` target with ``make -n``, a Python script or module must
  exist, anything else must be on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent

_NOT_RUN = re.compile(r"\s+#\s*not run:\s*(?P<reason>.*)$")
_EXIT = re.compile(r"\s+#\s*exit\s+(?P<code>\d+)\s*$")


@dataclass(frozen=True)
class Command:
    """One command of a ```sh block."""

    doc: str
    line: int
    text: str
    expect: int = 0
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"docs/{self.doc}:{self.line}"


def commands(path: Path) -> Iterator[Command]:
    """The commands of ``path``'s ```sh blocks (``\\`` continuations joined)."""
    in_sh, pending, start = False, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("```"):
            in_sh = line.strip() == "```sh"
            continue
        if not in_sh or (not pending and (not line.strip() or line.lstrip().startswith("#"))):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text, pending = pending + line, ""
        if m := _NOT_RUN.search(text):
            yield Command(path.name, start, text[: m.start()], not_run=m["reason"].strip())
        elif m := _EXIT.search(text):
            yield Command(path.name, start, text[: m.start()], expect=int(m["code"]))
        else:
            yield Command(path.name, start, text)


_FILE = re.compile(r"^```\w*\s+file=(?P<name>[\w.-]+)\s*$")


def files(path: Path) -> dict[str, str]:
    """The ```` ```lang file=NAME ```` blocks of ``path``: name -> content."""
    out: dict[str, str] = {}
    name: str | None = None
    for line in path.read_text().splitlines(keepends=True):
        if name is not None:
            if line.startswith("```"):
                name = None
            else:
                out[name] += line
        elif m := _FILE.match(line.rstrip()):
            name = m["name"]
            out[name] = ""
    return out


def _documents() -> dict[str, list[Command]]:
    seen: set[str] = set()
    out: dict[str, list[Command]] = {}
    for path in sorted(DOCS.glob("*.md")):
        for cmd in commands(path):
            if cmd.text not in seen:  # one run per distinct invocation
                seen.add(cmd.text)
                out.setdefault(path.name, []).append(cmd)
    return out


def _parse_only(cmd: Command) -> str:
    """A cheap command that fails when ``cmd``'s program, subcommand or options don't exist."""
    words = shlex.split(cmd.text)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words.pop(0)  # leading VAR=value assignments
    program = words[0] if words else ""
    if program.endswith(("junction", "prefect")):
        return cmd.text + " --help"
    if program == "make":
        return "make -n " + shlex.join(words[1:])
    if program.endswith("python") and len(words) > 2 and words[1] == "-m":
        find = f"import importlib.util as u, sys; sys.exit(u.find_spec({words[2]!r}) is None)"
        return f"{shlex.quote(program)} -c {shlex.quote(find)}"
    if program.endswith("python") and len(words) > 1:
        return f"test -f {shlex.quote(words[1])}"
    return f"command -v {shlex.quote(program)}"


def _run(cmd: Command, env: dict[str, str], cwd: Path) -> str | None:
    """Run one command; an error message naming its doc line, or None."""
    text = _parse_only(cmd) if cmd.not_run is not None else cmd.text
    expect = 0 if cmd.not_run is not None else cmd.expect
    try:
        done = subprocess.run(
            ["bash", "-c", text],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{cmd.where}: `{text}` did not finish in 60 s"
    if done.returncode != expect:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        return f"{cmd.where}: `{text}` exited {done.returncode} (expected {expect}): " + " / ".join(
            tail
        )
    return None


def _run_document(doc: str, cmds: list[Command], home: Path, sandbox: SandboxServer) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUNCTION_", "PREFECT_"))}
    for flag in ("AI_WORKFLOW_ENABLED", "CROSS_SERVICE_ORCHESTRATION_ENABLED"):
        env.pop(flag, None)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        JUNCTION_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        JUNCTION_SANDBOX_URL=sandbox.url,
        JUNCTION_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
        NO_COLOR="1",
    )
    work = home.parent / f"{home.name}-cwd"
    for d in (home, work):
        d.mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".junction"}:
            (work / entry.name).symlink_to(entry)
    for name, content in files(DOCS / doc).items():
        (work / name).write_text(content)
    env["XDG_CONFIG_HOME"] = str(home / "config")  # never the user's junction.env
    return [err for cmd in cmds if (err := _run(cmd, env, work))]


def test_every_documented_command_runs(tmp_path: Path, sb: SandboxServer) -> None:
    docs = _documents()
    assert docs, "no ```sh commands found in docs/"
    with ThreadPoolExecutor(max_workers=len(docs)) as pool:
        results = pool.map(
            lambda item: _run_document(item[0], item[1], tmp_path / item[0], sb), docs.items()
        )
        errors = [err for errs in results for err in errs]
    assert not errors, "\n".join(errors)


def test_not_run_commands_say_why() -> None:
    for path in sorted(DOCS.glob("*.md")):
        for cmd in commands(path):
            assert cmd.not_run != "", f"{cmd.where}: '# not run:' needs a reason"


def test_the_marker_parser(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```sh\n# a comment\njunction config \\\n  --json\n"
        "junction alerts list  # exit 2\njunction serve  # not run: starts a server\n```\n"
        "```\nnot a command\n```\n```yaml file=a.yaml\nx: 1\n```\n"
    )
    assert files(doc) == {"a.yaml": "x: 1\n"}
    got = list(commands(doc))
    assert [(c.line, c.text, c.expect, c.not_run) for c in got] == [
        (4, "junction config    --json", 0, None),
        (6, "junction alerts list", 2, None),
        (7, "junction serve", 0, "starts a server"),
    ]
    assert _parse_only(got[2]) == "junction serve --help"


def test_api_reference_is_generated_from_the_schema() -> None:
    from junction.service.apidoc import generate  # imports FastAPI and the whole service

    assert (DOCS / "api.md").read_text() == generate(), (
        "docs/api.md is stale: run `python -m junction.service.apidoc > docs/api.md`"
    )


@pytest.mark.parametrize("name", ["README.md"])
def test_readme_links_every_document(name: str) -> None:
    text = (ROOT / name).read_text()
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in text]
    assert not missing, f"{name} does not link {missing}"


def test_a_failing_command_is_named_by_its_doc_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "")}
    err = _run(Command("x.md", 7, "echo oops >&2; exit 3"), env, tmp_path)
    assert err is not None and err.startswith("docs/x.md:7: ") and "exited 3" in err
    assert "oops" in err
    assert _run(Command("x.md", 8, "exit 2", expect=2), env, tmp_path) is None
    assert _run(Command("x.md", 9, "nonexistent-tool --x", not_run="a server"), env, tmp_path)
