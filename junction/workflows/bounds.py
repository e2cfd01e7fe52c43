"""Resource bounds of template rendering: value sizes, loop iterations, integers and time.

Jinja evaluates a template synchronously, so a template that builds a huge value or loops
for minutes would hold the event loop (and the memory) far beyond the step's ``timeout``.
Every way a template can make work is bounded here, before the work is done:

- **sizes**: an operation that builds a string or a collection (``*``, ``+``, ``~``, ``%``
  formatting, the ``join``, ``replace``, ``indent``, ``batch``, ``sum``, ``tojson``
  filters) is refused when its result would exceed :data:`MAX_CHARS` rendered
  characters (estimated from its operands, not measured after building it);
- **integers**: ``*`` and ``**`` refuse results over :data:`MAX_INT_BITS` bits
  (``((10**64)**64)**64`` would take seconds of CPU to compute);
- **loops**: ``{% for %}`` loops of one render run :data:`MAX_ITERATIONS` times at most,
  over all loops (nested loops over a long string are quadratic);
- **time**: each loop iteration and each bounded operation checks the render's deadline,
  set by :func:`time_budget` (the runner gives a render its step's timeout), else
  :data:`DEFAULT_SECONDS`.

:mod:`junction.workflows.templating` wires these into its sandboxed environment
(:data:`GUARDED_FILTERS`, :func:`check_binop`, :func:`loop_guard`, :func:`concat`,
:func:`collect`); a violation raises :class:`LimitExceeded`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import Undefined, pass_environment, pass_eval_context
from jinja2.filters import do_batch, do_indent, do_join, do_replace, do_sum, do_tojson
from jinja2.nodes import EvalContext

__all__ = [
    "DEFAULT_SECONDS",
    "GUARDED_FILTERS",
    "MAX_CHARS",
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "MAX_ITERATIONS",
    "MAX_REPEAT",
    "LimitExceeded",
    "check_binop",
    "collect",
    "concat",
    "loop_guard",
    "rendering",
    "time_budget",
]

MAX_CHARS = 1_000_000
"""Largest string or collection (in rendered characters) one operation may produce."""

MAX_REPEAT = 100_000
"""Largest ``len(sequence) * n`` of a ``*`` repetition."""

MAX_ITERATIONS = 100_000
"""Loop iterations of one render, over all its ``{% for %}`` loops."""

MAX_INT_BITS = 10_000
"""Largest integer (in bits, about 3,000 digits) ``*`` and ``**`` may produce."""

MAX_EXPONENT = 64
"""Largest exponent of ``**``."""

MAX_JSON_INDENT = 64
"""Largest ``tojson(indent=...)``."""

DEFAULT_SECONDS = 30.0
"""Time budget of a render outside :func:`time_budget`."""

_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?([a-zA-Z%])")


class LimitExceeded(Exception):
    """A template tried to build too much, loop too long, or ran out of time."""


@dataclass
class _Budget:
    deadline: float
    seconds: float
    iterations: int = 0


_deadline: ContextVar[tuple[float, float] | None] = ContextVar("template_deadline", default=None)
_current: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Renders inside the block share a deadline ``seconds`` from now.

    Args:
        seconds: The budget (the runner passes the step's timeout).
    """
    token = _deadline.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextmanager
def rendering() -> Iterator[None]:
    """One render: a fresh iteration count, the enclosing deadline (or the default one)."""
    outer = _deadline.get() or (time.monotonic() + DEFAULT_SECONDS, DEFAULT_SECONDS)
    token = _current.set(_Budget(*outer))
    try:
        yield
    finally:
        _current.reset(token)


def tick() -> None:
    """Fail when the current render is past its deadline.

    Raises:
        LimitExceeded: Out of time.
    """
    budget = _current.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise LimitExceeded(
            f"rendering took longer than the step's time budget ({budget.seconds:g}s)"
        )


def size(value: Any, limit: int = MAX_CHARS) -> int:
    """Rendered characters of ``value`` (an estimate; counting stops once past ``limit``)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None or isinstance(value, Undefined):
        return 5
    if isinstance(value, int):
        return int(value.bit_length() * 0.30103) + 2
    if isinstance(value, float):
        return 24
    total = 2
    if isinstance(value, Mapping):
        for key, item in value.items():
            total += size(key, limit) + size(item, limit) + 4
            if total > limit:
                return total
        return total
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            total += size(item, limit) + 2
            if total > limit:
                return total
        return total
    return 64


def _too_big(what: str, chars: int) -> None:
    tick()
    if chars > MAX_CHARS:
        raise LimitExceeded(f"{what} would produce over {MAX_CHARS} characters")


def _int_bits(what: str, bits: float) -> None:
    if bits > MAX_INT_BITS:
        raise LimitExceeded(f"{what} would produce an integer over {MAX_INT_BITS} bits")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse a binary operation whose result would be too big (before computing it).

    Raises:
        LimitExceeded: With what was refused.
    """
    tick()
    if operator == "**":
        if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise LimitExceeded("exponent too large")
        if _is_int(left) and _is_int(right) and right > 0:
            _int_bits("**", left.bit_length() * right)
    elif operator == "*":
        if _is_int(left) and _is_int(right):
            _int_bits("*", left.bit_length() + right.bit_length())
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and _is_int(times) and times > 0:
                if len(seq) * times > MAX_REPEAT:
                    raise LimitExceeded("repetition too large")
                _too_big("repetition", size(seq, MAX_CHARS // times + 1) * times)
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _too_big("+", size(left) + size(right))
    elif operator == "%" and isinstance(left, str):
        _too_big("% formatting", len(left) + _format_width(left) + size(right))


def _format_width(fmt: str) -> int:
    """The padding ``fmt``'s conversions may add (``%999999999d``), refusing ``*`` widths."""
    total = 0
    for match in _FORMAT_SPEC.finditer(fmt):
        for part in match.group(1, 2):
            if not part:
                continue
            if part == "*" or len(part) > 7:
                raise LimitExceeded(f"% formatting width {part[:12]!r} too large")
            total += int(part)
    return total


def loop_guard(iterable: Iterable[Any]) -> Iterator[Any]:
    """Counts a ``{% for %}`` loop's iterations against the render's budget."""
    budget = _current.get()
    for item in iterable:
        if budget is not None:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise LimitExceeded(f"template loops ran over {MAX_ITERATIONS} iterations")
            if time.monotonic() > budget.deadline:
                tick()
        yield item


def concat(parts: list[Any]) -> str:
    """``a ~ b ~ c``, refused when the result would be too big."""
    _too_big("~", sum(size(p) for p in parts))
    return "".join(str(p) for p in parts)


def collect(chunks: Iterable[str], limit: int) -> str:
    """A template's output from its chunks, stopping once it passes ``limit`` characters.

    Raises:
        LimitExceeded: The output is too long or the render ran out of time.
    """
    out: list[str] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise LimitExceeded(f"template output over {limit} characters")
        tick()
        out.append(chunk)
    return "".join(out)


# --- filters that build strings or collections from their arguments -----------------------


@pass_eval_context
def _join(
    eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None
) -> str:
    items = list(value)
    _too_big("join", size(items) + len(str(d)) * max(0, len(items) - 1))
    return do_join(eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    text, old_s, new_s = str(s), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _too_big("replace", len(text) + hits * max(0, len(new_s) - len(old_s)))
    return do_replace(eval_ctx, s, old, new, count)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = len(width) if isinstance(width, str) else int(width)
    _too_big("indent", pad)
    _too_big("indent", len(text) + (text.count("\n") + 1) * pad)
    return do_indent(s, width, first, blank)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if not 0 < int(linecount) <= MAX_REPEAT:
        raise LimitExceeded(f"batch size must be 1 to {MAX_REPEAT}")
    tick()
    return do_batch(value, linecount, fill_with)


@pass_environment
def _sum(
    environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    items = list(iterable)
    if not isinstance(start, int | float) or attribute is not None:
        total = size(items) + size(start)
        _too_big("sum", total)
        # summing sequences copies the growing result at each step
        _too_big("sum", len(items) * total // 100)
    return do_sum(environment, items, attribute, start)


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> Any:
    if indent is not None and not 0 <= int(indent) <= MAX_JSON_INDENT:
        raise LimitExceeded(f"tojson indent must be 0 to {MAX_JSON_INDENT}")
    _too_big("tojson", size(value) * (2 if indent else 1))
    return do_tojson(eval_ctx, value, indent)


GUARDED_FILTERS: dict[str, Callable[..., Any]] = {
    "join": _join,
    "replace": _replace,
    "indent": _indent,
    "batch": _batch,
    "sum": _sum,
    "tojson": _tojson,
}
"""Replacements of jinja's filters that can build large values: each checks first."""
