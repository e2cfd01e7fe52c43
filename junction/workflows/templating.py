"""Sandboxed templating of workflow specs: ``{{ params.email }}``, ``{{ steps.hire.output.id }}``.

Built on jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment`, narrowed further:

- Data only: attribute access reads mapping keys and nothing else (``x.__class__``,
  ``x.items`` and every method are undefined, hence an error); item access reads mapping
  keys and list indexes. No globals (``range``, ``lipsum``, ``cycler``, ``joiner``,
  ``namespace`` are gone), no calls at all, no ``include``/``import``/``extends``/macros
  (rejected before rendering; there is no loader, so no file access either), only the
  whitelisted filters below. ``StrictUndefined``: a missing key is an error, never "".
- Bounded (:mod:`junction.workflows.bounds`): operations that build strings,
  collections or integers refuse results that would be huge *before* building them, loops
  are counted, output is capped while it is produced, and a render stops at its time
  budget (the runner gives it the step's timeout: :func:`time_budget`).
- Native types: a string that is exactly one ``{{ expression }}`` renders to the
  expression's value (``"{{ params.count }}"`` gives the int), anything else to a string.

Public API: :func:`render` (recursive over dicts and lists), :func:`evaluate` (a bare
expression, for ``when`` and ``for_each``), :func:`references` and
:func:`step_references` (static extraction, for validation and dependency inference),
:func:`check_syntax`, :func:`expression_source`, :func:`time_budget`,
:class:`TemplateError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from junction.workflows import bounds
from junction.workflows.bounds import LimitExceeded, time_budget

__all__ = [
    "ALLOWED_FILTERS",
    "ROOTS",
    "TemplateError",
    "check_syntax",
    "evaluate",
    "expression_source",
    "has_template",
    "references",
    "render",
    "single_expression",
    "step_references",
    "time_budget",
]

ROOTS = frozenset({"params", "steps", "item", "index", "workflow", "run", "inputs"})
"""Top-level names a template may read (validation rejects others)."""

ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "default", "d", "first", "float", "int", "join", "last",
        "length", "count", "list", "lower", "upper", "max", "min", "replace", "round",
        "sort", "string", "sum", "title", "tojson", "trim", "truncate", "unique",
        "map", "select", "reject", "selectattr", "rejectattr", "batch", "indent",
        "split", "tail_lines", "items_of",
    }
)  # fmt: skip
"""Filters a template may use (``map``/``selectattr`` read keys through the sandbox)."""

_MAX_OUTPUT = bounds.MAX_CHARS
_LOOP_GUARD = "__loop_guard"  # internal filters: a template cannot name them (not allowed)
_CONCAT = "__concat"
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)
_RESERVED_NAMES = frozenset({"self", "varargs", "kwargs", "caller", "context", "environment"})
_FORBIDDEN_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.Macro,
    nodes.CallBlock,
    nodes.Call,
    nodes.Block,
    nodes.FilterBlock,
    nodes.With,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.ScopedEvalContextModifier,
)


class TemplateError(ValueError):
    """A template is invalid, unsafe, or reads something the data does not have."""


def _split(value: str, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    return str(value).split(sep, maxsplit)


def _tail_lines(value: str, count: int = 50) -> str:
    return "\n".join(str(value).splitlines()[-int(count) :])


def _items_of(value: Mapping[str, Any]) -> list[list[Any]]:
    return [[k, v] for k, v in value.items()]


class _Sandbox(SandboxedEnvironment):
    """A sandbox where templates see plain data only."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, loader=None)
        self.globals.clear()
        kept = {name: f for name, f in self.filters.items() if name in ALLOWED_FILTERS}
        self.filters.clear()
        self.filters.update(kept)
        self.filters.update({"split": _split, "tail_lines": _tail_lines, "items_of": _items_of})
        self.filters.update(bounds.GUARDED_FILTERS)
        self.filters[_LOOP_GUARD] = bounds.loop_guard
        self.filters[_CONCAT] = bounds.concat

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``a.b`` reads key ``b`` of a mapping; nothing else has attributes."""
        if isinstance(obj, Undefined):
            return obj._fail_with_undefined_error()
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """``a[k]``: a mapping key or a sequence index, nothing else."""
        if isinstance(obj, Undefined):
            return obj._fail_with_undefined_error()
        if isinstance(obj, Mapping):
            if argument in obj:
                return obj[argument]
        elif isinstance(obj, Sequence) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except IndexError:
                pass
        return self.undefined(obj=obj, name=str(argument))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Refuse ``'x' * 10**9``, ``9 ** 9 ** 9``, ``'%999999999d' % 1`` before computing."""
        bounds.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=1)
def _env() -> _Sandbox:
    return _Sandbox()


def has_template(value: str) -> bool:
    """Whether a string contains jinja syntax at all."""
    return "{{" in value or "{%" in value or "{#" in value


def _check_tree(tree: nodes.Node, source: str) -> None:
    for node in tree.find_all(_FORBIDDEN_NODES):
        kind = type(node).__name__.lower()
        hint = "function and method calls" if kind == "call" else f"{{% {kind} %}}"
        raise TemplateError(f"{hint} not allowed in templates: {source.strip()!r}")
    for name in tree.find_all(nodes.Name):
        if name.name in _RESERVED_NAMES:
            raise TemplateError(f"{name.name!r} is not available in templates: {source.strip()!r}")
    for node in tree.find_all(nodes.Getattr):
        # Caught here, not only at render time, so `workflow validate` rejects the spec.
        if node.attr.startswith("__"):
            raise TemplateError(
                f"has no attribute {node.attr!r} (templates read data only): {source.strip()!r}"
            )
        base: nodes.Node = node
        while isinstance(base, nodes.Getattr | nodes.Getitem):
            base = base.node
        if not isinstance(base, nodes.Name):
            raise TemplateError(
                f"attributes can only be read from data (params, steps, item): {source.strip()!r}"
            )
    for node in tree.find_all(nodes.Filter):
        if node.name not in ALLOWED_FILTERS:
            raise TemplateError(
                f"filter {node.name!r} not allowed (allowed: {', '.join(sorted(ALLOWED_FILTERS))})"
            )


@lru_cache(maxsize=2048)
def _parse(source: str) -> nodes.Template:
    try:
        tree = _env().parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} in {source.strip()!r}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. a 5,000-digit literal
        shown = source.strip()[:80]
        raise TemplateError(f"template cannot be parsed: {exc} in {shown!r}") from None
    _check_tree(tree, source)
    return tree


class _Guard(NodeTransformer):
    """Routes loops and ``~`` through :mod:`~junction.workflows.bounds` (after the checks)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_GUARD, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(parts, _CONCAT, [], [], None, None, lineno=node.lineno)


def _guarded(tree: nodes.Template) -> nodes.Template:
    guarded = _Guard().visit(tree)
    guarded.set_environment(_env())
    return guarded


def expression_source(expression: str) -> str:
    """The bare expression of ``expression`` (``{{ ... }}`` around it is accepted)."""
    match = _SINGLE.match(expression)
    return match.group("expr") if match else expression


def single_expression(value: str) -> str | None:
    """The expression of a string that is exactly one ``{{ expression }}``, else ``None``."""
    match = _SINGLE.match(value)
    if match is None or "}}" in match.group("expr"):
        return None
    return match.group("expr")


def check_syntax(value: str, *, expression: bool = False) -> None:
    """Parse ``value`` and apply the sandbox's static rules.

    Args:
        value: A template string (or, with ``expression``, a bare expression).
        expression: ``value`` is an expression (``when``, ``for_each``).

    Raises:
        TemplateError: Bad syntax, a forbidden construct or filter.
    """
    _parse("{{ " + expression_source(value) + " }}" if expression else value)


@lru_cache(maxsize=2048)
def _compiled_expression(expr: str) -> TemplateExpression:
    _parse("{{ " + expr + " }}")  # the static rules
    try:
        parser = Parser(_env(), expr, state="variable")
        node = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} in {expr.strip()!r}") from None
    body = [nodes.Assign(nodes.Name("result", "store"), node, lineno=1)]
    template = _env().from_string(_guarded(nodes.Template(body, lineno=1)))
    return TemplateExpression(template, undefined_to_none=False)


@lru_cache(maxsize=2048)
def _compiled_template(source: str) -> Any:
    _parse(source)  # the static rules
    return _env().from_string(_guarded(_env().parse(source)))


def _fail(source: str, exc: Exception) -> TemplateError:
    shown = source.strip()[:200]
    if isinstance(exc, UndefinedError):
        return TemplateError(f"{exc.message} in {shown!r}")
    if isinstance(exc, LimitExceeded):
        return TemplateError(f"template refused: {exc} in {shown!r}")
    if isinstance(exc, SecurityError):
        return TemplateError(f"unsafe template {shown!r}: {exc}")
    return TemplateError(f"cannot render {shown!r}: {type(exc).__name__}: {exc}")


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """The value of an expression (``params.x > 3``; ``{{ ... }}`` around it is accepted).

    Bounded like every render (:mod:`junction.workflows.bounds`).

    Raises:
        TemplateError: Invalid, unsafe, too costly, or reading missing data.
    """
    expr = expression_source(expression)
    try:
        with bounds.rendering():
            value = _compiled_expression(expr)(**context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
    except TemplateError:
        raise
    except Exception as exc:  # jinja raises many kinds; each is a template failure
        raise _fail(expr, exc) from None
    return value


def _render_string(source: str, context: Mapping[str, Any]) -> Any:
    if not has_template(source):
        return source
    match = _SINGLE.match(source)
    if match and "}}" not in match.group("expr") and "{%" not in source:
        return evaluate(match.group("expr"), context)
    try:
        with bounds.rendering():
            return bounds.collect(_compiled_template(source).generate(**context), _MAX_OUTPUT)
    except TemplateError:
        raise
    except Exception as exc:
        raise _fail(source, exc) from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string in ``value`` (recursing into dicts and lists).

    Args:
        value: A string, or a dict/list holding strings; other values pass through.
        context: The data (``params``, ``steps``, ...).

    Raises:
        TemplateError: On the first template that fails.
    """
    if isinstance(value, str):
        return _render_string(value, context)
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


# --- static references ----------------------------------------------------------------------


def _chain(node: nodes.Node) -> tuple[list[str], nodes.Node, list[nodes.Node]] | None:
    """``a.b[0].c`` -> (["a", "b", "0", "c"], base, [non-constant subscripts])."""
    parts: list[str] = []
    dynamic: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
                parts.append(str(node.arg.value))
            else:
                parts.clear()  # a computed key: only the part before it is known
                dynamic.append(node.arg)
            node = node.node
        else:
            break
    if not isinstance(node, nodes.Name):
        return None
    return [node.name, *reversed(parts)], node, dynamic


def _walk(node: nodes.Node, local: frozenset[str]) -> Iterator[tuple[str, ...]]:
    if isinstance(node, nodes.For):
        targets = [node.target, *node.target.find_all(nodes.Name)]
        names = frozenset(n.name for n in targets if isinstance(n, nodes.Name))
        yield from _walk(node.iter, local)
        for child in [*node.body, *node.else_]:
            yield from _walk(child, local | names)
        if node.test is not None:
            yield from _walk(node.test, local | names)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        found = _chain(node)
        if found is not None:
            chain, _, dynamic = found
            if chain[0] not in local:
                yield tuple(chain)
            for arg in dynamic:
                yield from _walk(arg, local)
            return
    if isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name not in local:
            yield (node.name,)
        return
    for child in node.iter_child_nodes():
        yield from _walk(child, local)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def references(value: Any, *, expression: bool = False) -> set[tuple[str, ...]]:
    """The data paths templates in ``value`` read, like ``("steps", "hire", "output", "id")``.

    Args:
        value: A template string, or dicts/lists holding them.
        expression: Strings are bare expressions (``when``, ``for_each``).

    Raises:
        TemplateError: A template does not parse or is not allowed.
    """
    found: set[tuple[str, ...]] = set()
    for text in _strings(value):
        if expression:
            tree = _parse("{{ " + expression_source(text) + " }}")
        elif has_template(text):
            tree = _parse(text)
        else:
            continue
        found.update(_walk(tree, frozenset()))
    return found


def step_references(value: Any, *, expression: bool = False) -> set[str]:
    """Ids of the steps the templates in ``value`` read (``steps.<id>...``).

    Unparseable templates contribute nothing here (validation reports them).
    """
    try:
        refs = references(value, expression=expression)
    except TemplateError:
        return set()
    return {r[1] for r in refs if r[0] == "steps" and len(r) > 1}
