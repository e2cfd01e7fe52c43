"""The project's modules are never optional, and its dependencies are declared as used.

* Every module of every package imports on its own, in a process where no other module of
  the project has been imported yet (an import cycle or a missing name shows up whichever
  module is imported first).
* ``junction --help`` (and each command group's help) imports none of the heavy libraries.
* No ``except ImportError`` guard (nor ``pytest.importorskip``) around a Junction module.
* Every third-party import is declared in pyproject.toml where it belongs (runtime, the
  ``sandbox`` extra, or ``dev``), every runtime dependency is used, and the two lock files
  pin the same versions.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("junction", "integrations", "analytics", "tasks", "flows", "deployments")
PACKAGES = (*RUNTIME_PACKAGES, "bench")
# What `junction --help` must not pull in: each costs from a tenth of a second to seconds.
HEAVY = (
    "prefect",
    "pandas",
    "duckdb",
    "numpy",
    "pyarrow",
    "great_expectations",
    "prophet",
    "matplotlib",
    "scipy",
    "starlette",
    "uvicorn",
)
# Import names the tests use for their own files (tests/*.py, and bench/ put on sys.path).
LOCAL_NAMES = {"tests", *(p.stem for d in ("tests", "bench") for p in (ROOT / d).glob("*.py"))}


def _python_files(*dirs: str) -> Iterator[Path]:
    for d in dirs:
        yield from sorted(p for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> list[str]:
    """Dotted names of every module in the project's packages (``__main__`` excluded)."""
    return [_module_name(p) for p in _python_files(*PACKAGES) if p.stem != "__main__"]


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names
    )


def _guarded_tries(tree: ast.AST) -> Iterator[ast.Try]:
    """``try`` statements with an ``except ImportError``/``ModuleNotFoundError`` clause."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            yield node


def _walk(node: ast.AST, *, module_level: bool = False) -> Iterator[ast.AST]:
    """``ast.walk``; with ``module_level``, not into function bodies (not run at import)."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        if module_level and isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        todo.extend(ast.iter_child_nodes(n))


def _imports(node: ast.AST, *, module_level: bool = False) -> Iterator[tuple[str, int, str]]:
    """``(module, line, how)`` for every import under ``node``: ``how`` is ``statement``,
    ``import_module`` (also ``__import__``) or ``importorskip``; relative imports keep their
    dots and a non-literal name is ``<dynamic>``."""
    for n in _walk(node, module_level=module_level):
        if isinstance(n, ast.Import):
            for alias in n.names:
                yield alias.name, n.lineno, "statement"
        elif isinstance(n, ast.ImportFrom):
            yield ("." * n.level) + (n.module or ""), n.lineno, "statement"
        elif isinstance(n, ast.Call) and n.args:
            func = n.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__", "importorskip"):
                arg = n.args[0]
                name = arg.value if isinstance(arg, ast.Constant) else "<dynamic>"
                how = "importorskip" if called == "importorskip" else "import_module"
                yield str(name), n.lineno, how


def _is_ours(name: str) -> bool:
    top = name.split(".")[0]
    return name.startswith(".") or name == "<dynamic>" or top in PACKAGES or top in LOCAL_NAMES


# ----------------------------------------------------------------------------- imports


# Run in one fresh interpreter: third-party libraries the project imports at module level
# are loaded once, then each project module is imported in its own fork, where no project
# module has been imported before. Writes {module: traceback or ""} as JSON to argv[3].
_IMPORT_EACH = textwrap.dedent(
    """
    import importlib, json, os, select, signal, sys, time, traceback
    sys.path.insert(0, os.getcwd())
    preload, modules, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    for name in preload:
        try:
            importlib.import_module(name)
        except BaseException:
            pass  # the module that needs it reports the failure below
    results = {}
    running = {}  # read end of a child's pipe -> (pid, module, chunks, deadline)
    pending = list(modules)
    width = max(1, min(4, os.cpu_count() or 1))  # forks at once: one per core
    while pending or running:
        while pending and len(running) < width:
            module = pending.pop(0)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                for fd in running:
                    os.close(fd)
                try:
                    importlib.import_module(module)
                    message = ""
                except BaseException:
                    message = traceback.format_exc()
                os.write(w, message.encode() or b"-")
                os._exit(0)
            os.close(w)
            running[r] = (pid, module, [], time.monotonic() + 120)
        ready = select.select(list(running), [], [], 1.0)[0]
        now = time.monotonic()
        for r in list(running):
            pid, module, chunks, deadline = running[r]
            if r in ready:
                chunk = os.read(r, 65536)
                if chunk:
                    chunks.append(chunk)
                    continue
            elif now < deadline:
                continue
            else:
                os.kill(pid, signal.SIGKILL)
                chunks[:] = [b"import did not finish within 120 s"]
            os.close(r)
            del running[r]
            _, status = os.waitpid(pid, 0)
            text = b"".join(chunks).decode(errors="replace")
            if not text:
                text = "import crashed the interpreter (status %d)" % status
            results[module] = "" if text == "-" else text
    with open(out, "w") as f:
        json.dump(results, f)
    """
)


def _module_level_third_party() -> list[str]:
    """Third-party modules imported outside functions by the project's modules."""
    found: set[str] = set()
    for path in _python_files(*PACKAGES):
        for name, _, how in _imports(_tree(path), module_level=True):
            top = name.split(".")[0]
            if how == "statement" and not _is_ours(name) and top not in sys.stdlib_module_names:
                found.add(name)  # `from a.b import c` loads a.b (c may be a name, not a module)
    return sorted(found)


def test_every_module_imports_on_its_own(tmp_path: Path) -> None:
    modules = project_modules()
    assert "junction.cli" in modules and "integrations.base" in modules
    out = tmp_path / "results.json"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env["JUNCTION_HOME"] = str(tmp_path / "junction")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORT_EACH,
            json.dumps(_module_level_third_party()),
            json.dumps(modules),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    failed = {m: tb for m, tb in results.items() if tb}
    report = "\n\n".join(f"{m}:\n{tb.strip().splitlines()[-1]}" for m, tb in failed.items())
    assert not failed, f"{len(failed)} module(s) fail to import on their own:\n\n{report}"
    assert set(results) == set(modules)


def _help_imports(*args: str) -> list[str]:
    code = textwrap.dedent(
        f"""
        import json, sys
        from junction.cli import app
        try:
            app({[*args, "--help"]!r}, prog_name="junction")
        except SystemExit as exc:
            assert not exc.code, exc.code
        loaded = {{m.split(".")[0] for m in sys.modules}}
        print(json.dumps(sorted(loaded & set({list(HEAVY)!r}))))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _command_groups() -> list[str]:
    code = (
        "from junction.cli import app; "
        "print(' '.join(sorted(g.name for g in app.registered_groups if g.name)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_cli_help_imports_no_heavy_library() -> None:
    assert _help_imports() == [], "`junction --help` imports heavy libraries"
    groups = _command_groups()
    assert "workflow" in groups and "analytics" in groups
    heavy = {g: h for g in groups if (h := _help_imports(g))}
    assert not heavy, f"`junction GROUP --help` imports heavy libraries: {heavy}"


# ----------------------------------------------------------------------------- guards


def test_no_import_error_guard_around_junction_modules() -> None:
    """Our own modules are never optional: an ``except ImportError`` may guard only a
    third-party extra (e.g. uvloop). Re-raising as another error counts too: a caller can
    catch that one (a broken alerting module once became "no alerts")."""
    found = []
    for path in _python_files(*PACKAGES, "tests"):
        tree = _tree(path)
        for node in _guarded_tries(tree):
            ours = [(n, line) for stmt in node.body for n, line, _ in _imports(stmt)]
            found += [f"{path.relative_to(ROOT)}:{line}: {n}" for n, line in ours if _is_ours(n)]
        for name, line, how in _imports(tree):
            if how == "importorskip" and _is_ours(name):
                found.append(f"{path.relative_to(ROOT)}:{line}: pytest.importorskip({name!r})")
    assert not found, "Junction modules imported as if optional:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- dependencies


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        assert match, req
        names.add(_normalise(match.group()))
    return names


USED_THROUGH_ANOTHER = {
    "python-multipart": "FastAPI's Form() parses the dashboard's forms with it",
}
"""Runtime dependencies no module imports by name: another package loads them."""


@cache
def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return {
        "runtime": _requirement_names(project["dependencies"]),
        "sandbox": _requirement_names(extras["sandbox"]),
        "dev": _requirement_names(extras["dev"]) - {"junction"},
    }


def _third_party_imports(*dirs: str) -> dict[str, list[str]]:
    """Distribution name -> where it is imported (file:line), optional extras excluded."""
    to_dist = importlib.metadata.packages_distributions()
    uses: dict[str, list[str]] = {}
    for path in _python_files(*dirs):
        tree = _tree(path)
        optional = {id(n) for t in _guarded_tries(tree) for stmt in t.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in optional or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name, line, _ in _imports(node):
                top = name.split(".")[0]
                if not name or _is_ours(name) or top in sys.stdlib_module_names:
                    continue
                where = f"{path.relative_to(ROOT)}:{line}"
                for dist in to_dist.get(top, [f"<not installed: {top}>"]):
                    uses.setdefault(_normalise(dist), []).append(where)
    return uses


def test_third_party_imports_are_declared_where_they_belong() -> None:
    declared = _declared()
    problems = []
    runtime = _third_party_imports(*RUNTIME_PACKAGES)
    sandbox_dir = str(Path("integrations", "sandbox"))
    for dist, where in sorted(runtime.items()):
        outside_sandbox = [w for w in where if not w.startswith(sandbox_dir)]
        if dist in declared["runtime"]:
            continue
        if dist in declared["sandbox"] and not outside_sandbox:
            continue
        problems.append(f"{dist}: not a runtime dependency, imported at {where[:3]}")
    everything = declared["runtime"] | declared["sandbox"] | declared["dev"]
    for dist, where in sorted(_third_party_imports("tests", "bench").items()):
        if dist not in everything:
            problems.append(f"{dist}: not declared (dev), imported at {where[:3]}")
    for dist in sorted(declared["runtime"] - set(runtime) - set(USED_THROUGH_ANOTHER)):
        problems.append(f"{dist}: a runtime dependency that no runtime module imports")
    assert not problems, "pyproject.toml dependencies:\n" + "\n".join(problems)


def _pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {
        _normalise(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.M)
    }


def test_lock_files_pin_one_resolution() -> None:
    """requirements.lock (`make demo`) is the runtime subset of requirements-dev.lock."""
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    declared = _declared()
    differ = {d: (v, dev.get(d)) for d, v in runtime.items() if dev.get(d) != v}
    assert not differ, f"pinned differently in the two locks (run `make lock`): {differ}"
    missing = (declared["runtime"] | declared["sandbox"]) - set(runtime)
    assert not missing, f"declared but not pinned in requirements.lock: {sorted(missing)}"
    missing = declared["dev"] - set(dev)
    assert not missing, f"declared but not pinned in requirements-dev.lock: {sorted(missing)}"
    tools = {"pytest", "ruff", "mypy", "import-linter"}
    assert not tools & set(runtime), "requirements.lock (make demo) pins test/lint tools"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_lock_files_say_how_to_regenerate(lock: str) -> None:
    assert "make lock" in (ROOT / lock).read_text().splitlines()[1]
