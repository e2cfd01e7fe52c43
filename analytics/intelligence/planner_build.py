"""From the planned actions of a request to a workflow spec document.

:func:`build_spec` takes the actions the planner chose (:class:`Planned`, in run order,
each with its clause's stage, flags and entities) and fills each input from the request,
from upstream outputs (templates ``{{ steps.<id>.output... }}``, the syntax of the
built-in specs) or from a typed parameter, inserting the lookups an input needs
(deactivating an Okta user needs ``okta.get_user``). Dependencies come from the templates
plus ``needs``: a step after "then" waits for the steps before it, and a notification
that follows a side effect in the same stage reports it (unless the request says "in
parallel" / "at the same time").

Public API: :class:`Planned`, :class:`Built`, :func:`build_spec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from analytics.intelligence.lexicon import Lexicon, Op, Source
from integrations.registry import get_action

__all__ = ["Built", "Planned", "build_spec"]

_ROLE_ORDER = {"read": 0, "llm": 1, "write": 2, "notify": 3}


@dataclass
class Planned:
    """One action of the plan, before its inputs are filled."""

    op: Op
    clause: int
    stage: int
    entities: dict[str, list[str]]
    quoted: list[str] = field(default_factory=list)
    topic: str = ""
    primary: bool = True
    parallel: bool = False
    quantified: bool = False
    front: bool = False
    condition: bool = False  # read by a condition: every step may report it
    notifies: bool = False  # a write asked for as a notification ("let the on-call know")
    when: list[tuple[str, Planned | None]] = field(default_factory=list)
    sid: str = ""
    with_: dict[str, Any] = field(default_factory=dict)
    for_each: str | None = None
    fan_over: str | None = None
    needs: set[str] = field(default_factory=set)
    refs: set[str] = field(default_factory=set)
    subject: list[Planned] = field(default_factory=list)


@dataclass
class Built:
    """The spec document and what was filled in without being told."""

    spec: dict[str, Any]
    assumptions: list[str]


def clean(text: str) -> str:
    """User text safe inside a template: no template delimiters survive."""
    return re.sub(
        r"\s+", " ", text.replace("{", "(").replace("}", ")").replace("%", " percent")
    ).strip()


def _sub(expr: str, sid: str, how: str) -> str:
    """An ``output...`` / ``item...`` expression of step ``sid`` read as ``how``."""
    if how == "single":
        return re.sub(r"\boutput\b", f"steps.{sid}.output", expr)
    if how == "fanned":  # the consumer iterates over the producer's list of outputs
        return re.sub(r"\boutput\b", "item", expr)
    if how == "indexed":  # aligned with the consumer's own for_each by index
        return re.sub(r"\boutput\b", f"steps.{sid}.output[index]", expr)
    return expr  # an item expression of a list source, read inside for_each


class _Builder:
    def __init__(
        self, lex: Lexicon, planned: list[Planned], request: str, globals_: dict[str, list[str]]
    ):
        self.lex = lex
        self.request = request
        self.globals = globals_
        self.steps: list[Planned] = []
        self.params: dict[str, dict[str, Any]] = {}
        self.assumptions: list[str] = []
        self.ids: set[str] = set()
        for p in planned:
            self._add(p)

    # --- steps and parameters -------------------------------------------------------------
    def _add(self, p: Planned, before: int | None = None) -> Planned:
        base = p.op.id
        sid, n = base, 2
        while sid in self.ids:
            sid, n = f"{base}_{n}", n + 1
        p.sid = sid
        self.ids.add(sid)
        if before is None:
            self.steps.append(p)
        else:
            self.steps.insert(before, p)
        return p

    def param(self, src: Source, note: str = "") -> str:
        name = src.param or "value"
        if name not in self.params:
            spec: dict[str, Any] = {"type": src.type, "description": src.description or name}
            if src.default is not None:
                spec["default"] = src.default
                self.assumptions.append(f"parameter {name} defaults to {src.default!r}{note}")
            else:
                spec["required"] = True
            self.params[name] = spec
        return f"{{{{ params.{name} }}}}"

    # --- upstream values ------------------------------------------------------------------
    def producer(self, kind: str, pos: int) -> tuple[Planned, str] | None:
        """The nearest step before ``pos`` giving ``kind``, and its expression of it."""
        for p in reversed(self.steps[:pos]):
            if kind in p.op.produces:
                return p, p.op.produces[kind]
            if kind in p.op.item:
                return p, p.op.item[kind]
        return None

    def upstream(self, consumer: Planned, pos: int, kind: str) -> str | None:
        found = self.producer(kind, pos)
        if found is None:
            return None
        prod, expr = found
        consumer.refs.add(prod.sid)
        if prod.for_each is not None:  # the producer ran per item: its output is a list
            if consumer.fan_over in (None, prod.sid) and kind in prod.op.produces:
                consumer.fan_over = prod.sid
                consumer.for_each = f"steps.{prod.sid}.output"
                return _sub(expr, prod.sid, "fanned")
            return _sub(expr, prod.sid, "indexed")
        single = kind in prod.op.produces and expr == prod.op.produces.get(kind)
        wants_list = prod.quantified or consumer.quantified or not single
        if (
            prod.op.list_expr
            and kind in prod.op.item
            and wants_list
            and consumer.fan_over in (None, prod.sid)
        ):
            consumer.fan_over = prod.sid
            consumer.for_each = _sub(prod.op.list_expr, prod.sid, "single")
            return prod.op.item[kind]
        if not single:
            expr = prod.op.produces.get(kind, expr)
        return _sub(expr, prod.sid, "single")

    # --- text -----------------------------------------------------------------------------
    def content_sources(self, p: Planned, pos: int) -> list[Planned]:
        before = self.steps[:pos]
        if p.op.role == "llm":
            reads: list[Planned] = []
            for q in reversed(before):
                if q.op.role == "llm":
                    break
                if q.op.role == "read" and q.op.content:
                    reads.append(q)
            return list(reversed(reads[:3])) or (
                [before[-1]] if before and before[-1].op.content else []
            )
        llm = next((q for q in reversed(before) if q.op.role == "llm"), None)
        if llm is not None:
            return [llm]
        near = [  # reads of this clause or the one before, and the trigger's
            q
            for q in before
            if q.op.role == "read"
            and q.op.content
            and (q.condition or p.clause - 1 <= q.clause <= p.clause)
            and not (p.parallel and not q.primary and q.clause != p.clause)  # another's lookup
        ]
        return near[-1:]

    def show(self, consumer: Planned, q: Planned) -> str:
        if "X" in q.op.content:
            consumer.refs.add(q.sid)
        if consumer.fan_over is None and q.op.list_expr and (q.quantified or consumer.quantified):
            consumer.fan_over = q.sid
            consumer.for_each = _sub(q.op.list_expr, q.sid, "single")
        if consumer.fan_over == q.sid and q.for_each is None and q.op.list_expr:
            return re.sub(r"\bX\b", "item", q.op.item_content)  # "" for a list of recipients
        if q.for_each is not None:
            base = "item" if consumer.fan_over == q.sid else f"steps.{q.sid}.output[0]"
            if consumer.for_each is not None and consumer.fan_over != q.sid:
                base = f"steps.{q.sid}.output[index]"  # aligned with the consumer's items
            return re.sub(r"\bX\b", base, q.op.content)
        return re.sub(r"\bX\b", f"steps.{q.sid}.output", q.op.content)

    def title(self, p: Planned) -> str:
        if p.quoted:
            return clean(p.quoted[0])
        if p.topic:
            return clean(p.topic)
        pos = self.steps.index(p)
        about = [q for q in p.subject if q in self.steps[:pos]] or self.content_sources(p, pos)
        line = next((s.split("\n")[0] for s in (self.show(p, q) for q in about[:1]) if s), "")
        if line:
            single = re.fullmatch(r"\{\{ (.+?) \}\}", line)
            if single and "{{" not in single.group(1):
                return f"{{{{ ({single.group(1)}) | truncate(80) }}}}"
            return line
        if "alert_name" in self.params:
            return "{{ params.alert_name }}"
        words = clean(self.request)
        return words if len(words) <= 80 else words[:77] + "..."

    def content(self, p: Planned, pos: int) -> str:
        parts = [s for s in (self.show(p, q) for q in self.content_sources(p, pos)) if s]
        named = [  # "create a ticket, post its key": the record of the clause before
            q.sid for q in p.subject if q in self.steps[:pos] and q.clause == p.clause - 1
        ]
        for sid in sorted(p.needs) + [n for n in named if n not in p.needs]:
            q = next(s for s in self.steps if s.sid == sid)
            if q.op.role in {"write"} and q.op.content and q not in self.content_sources(p, pos):
                parts.append(self.show(p, q))
        return "\n".join(parts) if parts else self.title(p)

    def message(self, p: Planned, pos: int) -> str:
        body = self.content(p, pos)
        if p.quoted:
            return clean(p.quoted[0]) + ("\n" + body if body != self.title(p) else "")
        return body

    # --- inputs ---------------------------------------------------------------------------
    def entity(self, p: Planned, kind: str, *, local: bool = False) -> str | None:
        """A value of ``kind`` from the step's clause (else, unless ``local``, the request)."""
        values = p.entities.get(kind) or ([] if local else self.globals.get(kind)) or []
        return values[0] if values else None

    def fill(self, p: Planned, pos: int, name: str, sources: list[Source]) -> tuple[bool, Any]:
        for src in sources:
            if src.entity is not None:
                value = self.entity(p, src.entity, local=True)
                later = sources[sources.index(src) + 1 :]
                if value is None and not any(
                    s.from_ and self.producer(s.from_, pos) for s in later
                ):  # a value named elsewhere in the request, when no step gives one here
                    value = self.entity(p, src.entity)
                if value is None:
                    continue
                if src.param is not None:
                    return True, self.param(src, f" (the id of {value!r})")
                if src.as_list:
                    return True, [value]
                return True, clean(value)
            if src.from_ is not None:
                expr = self.upstream(p, pos, src.from_)
                if expr is None and src.helper is not None:
                    helper = Planned(
                        self.lex.op(src.helper), p.clause, p.stage, p.entities, primary=False
                    )
                    helper.quantified = False
                    self._add(helper, before=pos)
                    self.resolve(helper, pos)
                    return self.fill(p, pos + 1, name, sources)
                if expr is None:
                    continue
                return True, ([f"{{{{ {expr} }}}}"] if src.as_list else f"{{{{ {expr} }}}}")
            if src.param is not None:
                value = self.param(src)
                return True, [value] if src.as_list else value
            if src.text is not None:
                return True, self.text(p, pos, src.text)
            if src.matcher is not None:
                name_ = self.entity(p, "alert_name")
                value = (
                    clean(name_)
                    if name_
                    else self.param(Source(param="alert_name", description="Name of the alert."))
                )
                return True, [{"name": "alertname", "value": value, "is_regex": False}]
            if src.alert is not None:
                name_ = self.entity(p, "alert_name")
                value = (
                    clean(name_)
                    if name_
                    else self.param(Source(param="alert_name", description="Name of the alert."))
                )
                return True, [
                    {"labels": {"alertname": value}, "annotations": {"summary": self.title(p)}}
                ]
            if src.payload is not None:
                return True, {"text": self.message(p, pos)}
            if src.const is not None:
                return True, src.const
        return False, None

    def text(self, p: Planned, pos: int, kind: str) -> Any:
        if kind == "title":
            return self.title(p)
        if kind == "content":
            return self.content(p, pos)
        if kind == "prompt":
            body = self.content(p, pos)
            ask = (
                clean(p.topic)
                or "Summarize this for the team in at most five lines: what happened, "
                "the probable cause, the next step."
            )
            return [{"role": "system", "content": ask}, {"role": "user", "content": body}]
        return self.message(p, pos)

    def resolve(self, p: Planned, pos: int) -> None:
        for name, sources in p.op.with_.items():
            pos = self.steps.index(p)
            ok, value = self.fill(p, pos, name, sources)
            if ok:
                p.with_[name] = value
        if p.op.fallback_target is not None and not any(
            p.with_.get(k) for k in ("room_id", "to_person_email")
        ):
            p.with_["to_person_email"] = self.param(p.op.fallback_target)
        if p.with_.get("room_id") and "to_person_email" in p.with_:
            del p.with_["to_person_email"]  # a message goes to a room or to a person

    # --- ordering ---------------------------------------------------------------------------
    def order(self) -> None:
        by_stage: dict[int, list[Planned]] = {}
        for p in self.steps:
            if p.primary and not p.front:
                by_stage.setdefault(p.stage, []).append(p)
        stages = sorted(by_stage)
        for i, stage in enumerate(stages):
            for p in by_stage[stage]:
                if i > 0:
                    p.needs |= {q.sid for q in by_stage[stages[i - 1]]}
                if (p.op.role == "notify" or p.notifies) and not p.parallel:
                    for q in by_stage[stage]:
                        if q is p:
                            break
                        if q.op.role == "write" and q.clause != p.clause:
                            p.needs.add(q.sid)

    def upstream_ids(self, p: Planned) -> set[str]:
        return set(p.refs) | set(p.needs)

    def reachable(self, start: str, skip: str) -> set[str]:
        """Steps upstream of ``start`` not counting its direct ``needs`` on ``skip``."""
        by_id = {p.sid: p for p in self.steps}
        seen: set[str] = set()
        todo = [u for u in self.upstream_ids(by_id[start]) if u != skip]
        while todo:
            u = todo.pop()
            if u in seen or u not in by_id:
                continue
            seen.add(u)
            todo.extend(self.upstream_ids(by_id[u]))
        return seen

    def run(self) -> Built:
        self.order()
        i = 0
        while i < len(self.steps):
            p = self.steps[i]
            if not p.with_:
                self.resolve(p, i)
            i = self.steps.index(p) + 1
        for p in self.steps:
            for _text, cond in p.when:
                if cond is not None:
                    p.refs.add(cond.sid)
        for p in self.steps:  # drop waits another dependency already implies
            for n in sorted(p.needs):
                if n in self.reachable(p.sid, n) or n in p.refs:
                    p.needs.discard(n)
        return Built(self.document(), self.assumptions)

    def document(self) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        for p in self.steps:
            integration, action = p.op.action.split(".")
            spec = get_action(integration, action)
            step: dict[str, Any] = {
                "id": p.sid,
                "name": p.op.id.replace("_", " ").capitalize(),
                "uses": p.op.action,
            }
            if p.for_each:
                step["for_each"] = p.for_each
                step["concurrency"] = 4
            if p.when:
                texts = [w.format(sid=c.sid if c else "") for w, c in p.when]
                step["when"] = " and ".join(f"({w})" if " or " in w else w for w in texts)
            needs = sorted(n for n in p.needs if n not in p.refs and n != p.sid)
            if needs:
                step["needs"] = needs
            step["with"] = p.with_
            if spec.idempotent:
                step["retries"] = 2
            step["timeout"] = "60s" if p.op.role == "llm" else "30s"
            steps.append(step)
        return {"steps": steps, "parameters": self.params}


def build_spec(
    lex: Lexicon,
    planned: list[Planned],
    request: str,
    entities: dict[str, list[str]],
    params: dict[str, dict[str, Any]] | None = None,
) -> Built:
    """Fill the planned actions' inputs and dependencies (see the module docstring).

    Args:
        lex: The lexicon (for the helpers' recipes).
        planned: The actions, in run order.
        request: The request's text (titles fall back to it).
        entities: Entities of the whole request, by kind.

    Returns:
        ``steps`` and ``parameters`` of the spec, and the assumptions made.
    """
    ordered = sorted(
        range(len(planned)),
        key=lambda i: (not planned[i].front, planned[i].stage if not planned[i].front else 0, i),
    )
    builder = _Builder(lex, [planned[i] for i in ordered], request, entities)
    builder.params.update(params or {})
    return builder.run()


def role_rank(op: Op) -> int:
    """Reads first, then the LLM, writes, notifications (order inside one clause)."""
    return _ROLE_ORDER[op.role]
