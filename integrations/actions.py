"""Typed actions: client methods that take one pydantic model and return a typed result.

Vendor modules mark methods with :func:`action`; the workflow validator and runner read
each action's :class:`ActionSpec` (input model, output type, side effects, and which
input field carries the caller's idempotency key) without building a client. How a keyed
action stays safe to retry and rerun is :mod:`integrations.idempotency`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


@dataclass(frozen=True)
class ActionSpec:
    """Metadata of one typed action, for the workflow validator and the runner.

    Attributes:
        name: Action name (``create_user``).
        input: Pydantic model of the input.
        output: Type of the output (a pydantic model, or ``list[Model]``).
        read_only: No side effect: safe to cache and to coalesce.
        idempotent: Safe to retry (side effects are checked before create or keyed).
        description: One line, from the method's docstring.
        key_field: The input field that takes the caller's idempotency key (the
            workflow runner fills it with a key derived from the run and the step), or
            ``None`` when the action has none (read-only, or naturally idempotent).
    """

    name: str
    input: type[BaseModel]
    output: Any
    read_only: bool
    idempotent: bool
    description: str = ""
    key_field: str | None = None


def action(
    *,
    read_only: bool = False,
    idempotent: bool | None = None,
    name: str | None = None,
    key_field: str | None = None,
) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Mark a client method as a typed action: ``async def f(self, params: In) -> Out``.

    Args:
        read_only: The action has no side effect.
        idempotent: Retrying cannot duplicate a side effect (defaults to ``read_only``).
        name: Action name; defaults to the method name.
        key_field: The input field carrying the caller's idempotency key (checked to
            exist on the input model).

    Raises:
        TypeError: The method does not take exactly one pydantic model, or
            ``key_field`` is not one of its fields.
    """

    def decorate(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        hints = inspect.get_annotations(fn, eval_str=True)
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        if len(params) != 1 or not (
            isinstance(hints.get(params[0]), type) and issubclass(hints[params[0]], BaseModel)
        ):
            raise TypeError(f"action {fn.__qualname__} must take exactly one pydantic model")
        model: type[BaseModel] = hints[params[0]]
        if key_field is not None and key_field not in model.model_fields:
            raise TypeError(f"action {fn.__qualname__}: {model.__name__} has no {key_field!r}")
        doc = (inspect.getdoc(fn) or "").splitlines()
        fn.__junction_action__ = ActionSpec(  # type: ignore[attr-defined]
            name=name or fn.__name__,
            input=model,
            output=hints.get("return"),
            read_only=read_only,
            idempotent=read_only if idempotent is None else idempotent,
            description=doc[0] if doc else "",
            key_field=key_field,
        )
        return fn

    return decorate


def actions_of(cls: type) -> dict[str, ActionSpec]:
    """The typed actions of a client class (its bases' included), by name."""
    found: dict[str, ActionSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            spec = getattr(attr, "__junction_action__", None)
            if isinstance(spec, ActionSpec):
                found[spec.name] = spec
    return found
