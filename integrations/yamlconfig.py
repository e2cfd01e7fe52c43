"""The one way Junction loads a YAML configuration file into a pydantic model.

Every configuration file (workflow specs, alerting files, fault profiles, the catalog and
whatever comes next) goes through :func:`parse_yaml` / :func:`load_model`, so each gets
the same guarantees:

- **Safe loading only** (no Python tags), with libyaml's parser when it is installed.
- **Limits** before anything is built (:class:`YamlLimits`): file size, YAML nodes after
  alias expansion (a "billion laughs" file is a few lines of anchors that expand to
  billions of nodes), nesting depth, and scalars Python refuses to construct (a
  100,000-digit integer).
- **Errors that point at the file**: each problem is a :class:`ConfigProblem` printed as
  ``file:line: field: problem``; an unknown key says what it may have meant.

It lives in the bottom layer (``integrations``) because the catalog and the sandbox's
fault profiles are configuration files too; the core imports it from here.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConfigError",
    "ConfigModel",
    "ConfigProblem",
    "DataPath",
    "YamlDocument",
    "YamlLimits",
    "did_you_mean",
    "load_model",
    "parse_yaml",
    "problems_from_validation",
    "read_yaml",
    "validate_document",
]

M = TypeVar("M", bound=BaseModel)
DataPath = tuple[str | int, ...]
"""A location inside a document: mapping keys and list indexes (``("steps", 0, "id")``)."""


class ConfigModel(BaseModel):
    """Base of configuration models: unknown keys and non-finite numbers are errors.

    ``.inf`` and ``.nan`` are valid YAML floats; a threshold of ``.nan`` compares false
    with everything and silently disables whatever it configures, so they are refused.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class YamlLimits:
    """What a configuration file may be.

    Attributes:
        max_bytes: Largest file (bytes of UTF-8).
        max_nodes: Most YAML nodes after alias expansion (each use of an alias counts).
        max_depth: Deepest nesting of mappings and lists.
    """

    max_bytes: int = 1_000_000
    max_nodes: int = 20_000
    max_depth: int = 64


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file.

    Attributes:
        source: The file (or a name such as ``<alerting>``).
        line: 1-based line, ``None`` when unknown.
        field: Dotted location (``rules.2.threshold``), empty for the whole file.
        message: What is wrong.
    """

    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(ValueError):
    """A configuration file is invalid; :attr:`problems` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def first(self) -> str:
        """The first problem, plus a count of the others: a one-line summary."""
        more = len(self.problems) - 1
        return str(self.problems[0]) + (f" (and {more} more)" if more > 0 else "")


@dataclass
class YamlDocument:
    """A parsed file: its data and where each piece of it stands.

    Attributes:
        data: The plain Python data (``None`` for an empty file).
        source: The file name shown in errors.
        duplicates: Keys given twice in one mapping (path, line); YAML keeps the last.
    """

    data: Any
    source: str
    value_lines: dict[DataPath, int] = field(default_factory=dict)
    key_lines: dict[DataPath, int] = field(default_factory=dict)
    duplicates: list[tuple[DataPath, int]] = field(default_factory=list)

    def line(self, path: Iterable[str | int], *, key: bool = True) -> int | None:
        """The line of ``path`` (its key's line for a mapping key), else its nearest parent's.

        Args:
            path: Keys and indexes from the document's root.
            key: Prefer the line of the key over the line where its value starts.
        """
        p = tuple(path)
        while p:
            if key and p in self.key_lines:
                return self.key_lines[p]
            if p in self.value_lines:
                return self.value_lines[p]
            p = p[:-1]
        return self.value_lines.get((), 1)

    def problem(self, path: Iterable[str | int], message: str) -> ConfigProblem:
        """A problem located at ``path``."""
        p = tuple(path)
        return ConfigProblem(self.source, self.line(p), ".".join(map(str, p)), message)

    def _index(self, node: yaml.Node, path: DataPath) -> None:
        self.value_lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    self.duplicates.append(((*path, name), key.start_mark.line + 1))
                seen.add(name)
                self.key_lines[(*path, name)] = key.start_mark.line + 1
                self._index(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, (*path, i))


def _too_big(node: yaml.Node, limits: YamlLimits) -> tuple[str, int] | None:
    """Why ``node`` is too big (and where), walking the composed tree without building it."""
    count = 0
    todo: list[tuple[yaml.Node, int]] = [(node, 1)]
    while todo:
        current, depth = todo.pop()
        count += 1
        if count > limits.max_nodes:
            return (
                f"expands to more than {limits.max_nodes} YAML nodes (too many aliases?)",
                current.start_mark.line + 1,
            )
        if depth > limits.max_depth:
            return (f"nests deeper than {limits.max_depth} levels", current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                todo.append((key, depth + 1))
                todo.append((value, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            todo.extend((item, depth + 1) for item in current.value)
    return None


def did_you_mean(name: object, known: Iterable[str], *, n: int = 1) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name``, else ``""``.

    Args:
        name: What was written.
        known: The valid names.
        n: How many close names to offer; above 1 they are listed unquoted
            (`` (did you mean a, b?)``).
    """
    close = difflib.get_close_matches(str(name), list(known), n=n)
    if not close:
        return ""
    shown = repr(close[0]) if n == 1 else ", ".join(close)
    return f" (did you mean {shown}?)"


def _fail(source: str, line: int | None, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(source, line, "", message)])


def parse_yaml(
    text: str | bytes, *, source: str = "<config>", limits: YamlLimits | None = None
) -> YamlDocument:
    """Parse YAML text safely, within ``limits``, keeping the line of every key and value.

    Args:
        text: The YAML (bytes must be UTF-8).
        source: The file name shown in errors.
        limits: Size, node and depth limits (default :class:`YamlLimits`).

    Returns:
        The document; duplicate keys are listed in ``duplicates`` (not an error here:
        :func:`load_model` reports them).

    Raises:
        ConfigError: Invalid UTF-8, too large, too many nodes, too deep, invalid YAML,
            or a scalar that cannot be built (with the line).
    """
    limits = limits or YamlLimits()
    if isinstance(text, bytes):
        raw = text
        if len(raw) > limits.max_bytes:
            raise _fail(source, None, f"the file is larger than {limits.max_bytes} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise _fail(source, line, f"not valid UTF-8 (byte {exc.start})") from None
    elif len(text) > limits.max_bytes or len(text.encode("utf-8", "replace")) > limits.max_bytes:
        raise _fail(source, None, f"the file is larger than {limits.max_bytes} bytes")
    doc = YamlDocument(None, source)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = _yaml_step(loader.get_single_node, source)
        if node is None:
            return doc
        big = _too_big(node, limits)  # before anything is built
        if big is not None:
            raise _fail(source, big[1], f"the file {big[0]}")
        doc.data = _yaml_step(lambda: loader.construct_document(node), source)
    finally:
        loader.dispose()
    doc._index(node, ())
    return doc


def _yaml_step(step: Callable[[], Any], source: str) -> Any:
    """Run one step of the YAML loader, its failures as located :class:`ConfigError`."""
    try:
        return step()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _fail(source, mark.line + 1 if mark else None, f"invalid YAML: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # A scalar Python refuses to build: a 100,000-digit int, a huge float exponent.
        message = str(exc).split("\n")[0][:200]
        raise _fail(source, None, f"a value cannot be read: {message}") from None


def read_yaml(path: str | Path, *, limits: YamlLimits | None = None) -> YamlDocument:
    """Read and parse a YAML file (its size is checked before it is read).

    Raises:
        ConfigError: Also when the file cannot be read (missing, a directory, no access).
    """
    limits = limits or YamlLimits()
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise _fail(str(path), None, "not a file")
        if size > limits.max_bytes:
            raise _fail(str(path), None, f"the file is larger than {limits.max_bytes} bytes")
        with p.open("rb") as fh:
            raw = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise _fail(str(path), None, "no such file") from None
    except OSError as exc:
        raise _fail(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    return parse_yaml(raw, source=str(path), limits=limits)


# --- pydantic errors -> file:line: field: problem --------------------------------------------


def _data_path(loc: tuple[Any, ...], data: Any) -> DataPath:
    """The part of a pydantic error location that names data (drops union/validator tags).

    pydantic inserts tags such as ``function-after[...]`` or ``str`` into locations of
    union members; a tag is told from a key by walking the data, so keys that look like
    tags (``x-owner``, ``a[b]``) are still found.
    """
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if (isinstance(current, Mapping) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            path.append(part)
            current = current[part]
        elif part == "[key]":  # pydantic's marker for an error in a dict key: the key itself
            continue
        elif isinstance(current, Mapping) and isinstance(part, str) and i == len(loc) - 1:
            path.append(part)  # a missing key: the last part names it
            current = None
    return tuple(path)


def _unwrap(annotation: Any) -> list[Any]:
    """The classes an annotation may hold (Optional, unions, lists, dicts, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _unwrap(arg)]
    if origin in (list, tuple, set, frozenset, dict) or (
        origin is not None and getattr(origin, "__name__", "") in ("Sequence", "Mapping")
    ):
        args = typing.get_args(annotation)
        return _unwrap(args[-1]) if args else []
    return [annotation]


def _model_at(model: type[BaseModel], path: DataPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (best effort)."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        by_key = {(info.alias or name): info for name, info in current.model_fields.items()}
        info = by_key.get(part) or current.model_fields.get(part)
        if info is None:
            # A dict field's key (``channels: {ops: ...}``): stay on the value type.
            continue
        classes = [
            c for c in _unwrap(info.annotation) if isinstance(c, type) and issubclass(c, BaseModel)
        ]
        current = classes[0] if classes else None
    return current


def problems_from_validation(
    exc: ValidationError, doc: YamlDocument, model: type[BaseModel] | None = None
) -> list[ConfigProblem]:
    """Turn a pydantic validation error on ``doc.data`` into located problems.

    Args:
        exc: The error from validating ``doc.data``.
        doc: The parsed document (for lines).
        model: The model validated (for "did you mean" on unknown keys).
    """
    out: list[ConfigProblem] = []
    seen: set[tuple[DataPath, str]] = set()
    for err in exc.errors():
        path = _data_path(tuple(err["loc"]), doc.data)
        message = str(err["msg"]).removeprefix("Value error, ")
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(path[-1]) if path else "?"
            message = f"unknown field {name!r}"
            parent = _model_at(model, path[:-1]) if model is not None else None
            if parent is not None:
                allowed = [(i.alias or n) for n, i in parent.model_fields.items()]
                hint = did_you_mean(name, allowed)
                message += hint or f" (expected one of: {', '.join(sorted(allowed))})"
            problem = ConfigProblem(
                doc.source, doc.line(path), ".".join(map(str, path[:-1])), message
            )
        elif kind == "missing":
            name = str(path[-1]) if path else "?"
            problem = ConfigProblem(
                doc.source,
                doc.line(path),
                ".".join(map(str, path[:-1])),
                f"missing required field {name!r}",
            )
        else:
            if kind == "finite_number":
                message = "must be a finite number (not .inf or .nan)"
            problem = doc.problem(path, message)
        key = (path, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def load_model(
    model: type[M],
    source: str | Path,
    *,
    text: str | bytes | None = None,
    limits: YamlLimits | None = None,
    context: dict[str, Any] | None = None,
    empty: Any = None,
) -> M:
    """Load a YAML file (or ``text``) into ``model``, every problem located.

    Args:
        model: The pydantic model of the file (usually a :class:`ConfigModel`).
        source: The file to read; with ``text``, only the name shown in errors.
        text: The YAML itself, when it does not come from a file.
        limits: Size, node and depth limits.
        context: pydantic validation context.
        empty: What an empty file means (``None``: an error; ``{}``: all defaults).

    Raises:
        ConfigError: Every problem found, each as ``file:line: field: problem``.
    """
    doc = (
        parse_yaml(text, source=str(source), limits=limits)
        if text is not None
        else read_yaml(source, limits=limits)
    )
    return validate_document(model, doc, context=context, empty=empty)


def validate_document(
    model: type[M], doc: YamlDocument, *, context: dict[str, Any] | None = None, empty: Any = None
) -> M:
    """Validate a parsed document against ``model`` (see :func:`load_model`).

    Raises:
        ConfigError: Duplicate keys, a document that is not a mapping, schema errors.
    """
    problems = [doc.problem(path, f"duplicate key {path[-1]!r}") for path, _ in doc.duplicates]
    data = doc.data
    if data is None:
        if empty is None:
            problems.append(ConfigProblem(doc.source, 1, "", "the file is empty"))
            raise ConfigError(problems)
        data = empty
    if not isinstance(data, dict):
        problems.append(
            ConfigProblem(
                doc.source, 1, "", f"expected a mapping at the top, got {type(data).__name__}"
            )
        )
        raise ConfigError(problems)
    try:
        result = model.model_validate(data, context=context)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, doc, model))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return result
