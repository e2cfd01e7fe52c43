"""The built-in workflow specs, shipped inside the package (``junction/workflows/specs``).

Every caller (the CLI, the flows, the benchmarks, the analytics report's dependency map)
finds them through :func:`builtin_specs` / :func:`builtin_spec_dir`, never by a path of
its own.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["builtin_spec_dir", "builtin_specs", "resolve_spec_path"]

_SPEC_DIR = Path(__file__).resolve().parent / "specs"


def builtin_spec_dir() -> Path:
    """The directory of the built-in specs (package data)."""
    return _SPEC_DIR


def builtin_specs() -> dict[str, Path]:
    """The built-in specs by name (file stem), sorted: ``{"employee_onboarding": Path}``."""
    return {p.stem: p for p in sorted(_SPEC_DIR.glob("*.yaml"))}


def resolve_spec_path(path: str | Path) -> Path:
    """A spec file: ``path`` itself, or the built-in spec of that name.

    Raises:
        FileNotFoundError: Neither exists (the message lists the built-in names).
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    builtins = builtin_specs()
    name = str(path).removesuffix(".yaml")
    if name in builtins:
        return builtins[name]
    known = ", ".join(builtins) or "none"
    raise FileNotFoundError(
        f"no spec file {str(path)!r} and no built-in spec of that name (built-in: {known})"
    )
