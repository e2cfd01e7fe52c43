"""Load and validate a workflow spec before anything runs; every error names step and line.

Checks, all collected (never only the first): YAML syntax and duplicate keys (safe
loading only: ``yaml.SafeLoader``), the schema (:class:`~junction.workflows.spec.WorkflowSpec`),
duplicate step ids, unknown integrations / actions / capabilities / providers, ``with``
input names, required inputs and types against the action's pydantic input model
(constants are validated by the model; ``{{ params.x }}`` and ``{{ steps.y.output.z }}``
by the parameter's declared type and the output model's schema), templates (syntax,
sandbox rules, unknown names, parameters and steps, self references), dependency
cycles (named), unreachable steps (downstream of a cycle, or ``when: false``) and dead
``needs``, ``cache`` on a side-effecting action, step retries of a non-idempotent action,
fallbacks that do not share a capability, ``concurrency`` of unknown integrations.
Warnings (do not fail validation): output fields the model does not declare, actions
that cannot be made idempotent, read-only steps whose output nothing reads.

Public API: :func:`validate_text`, :func:`validate_file`, :func:`load_workflow` (raises
:class:`SpecInvalid`), :class:`SpecError` (also exported as ``ValidationError``),
:class:`ValidationResult`, :func:`builtin_specs`, :func:`resolve_spec_path`,
:data:`BUILTIN_DIR`, :data:`SCHEMA_PATH`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from junction.workflows.spec import ParamType, Step, WorkflowSpec
from junction.workflows.templating import ROOTS, TemplateError, check_syntax, references

__all__ = [
    "BUILTIN_DIR",
    "SCHEMA_PATH",
    "SpecError",
    "SpecInvalid",
    "ValidationError",
    "ValidationResult",
    "builtin_specs",
    "load_workflow",
    "resolve_spec_path",
    "validate_file",
    "validate_text",
]

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "flows" / "specs"
"""Where the built-in workflow specs live."""

SCHEMA_PATH = Path(__file__).resolve().parent / "workflow.schema.json"
"""The published JSON Schema of a spec."""

Path_ = tuple[str | int, ...]
_STEP_FIELDS = frozenset({"output", "status", "provider"})
_EXPRESSION_FIELDS = frozenset({"when", "for_each"})


@dataclass(frozen=True)
class SpecError:
    """One problem found in a spec.

    Attributes:
        message: What is wrong.
        line: 1-based line in the file (``None`` when unknown).
        step: Id of the step concerned, if any.
        file: The spec's file name (or ``<spec>``).
        severity: ``error`` fails validation; ``warning`` does not.
    """

    message: str
    line: int | None = None
    step: str | None = None
    file: str = "<spec>"
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        kind = "" if self.severity == "error" else "warning: "
        who = f"step '{self.step}': " if self.step else ""
        return f"{where}: {kind}{who}{self.message}"


ValidationError = SpecError
"""The name the issue uses for :class:`SpecError`."""


@dataclass
class ValidationResult:
    """What validation found.

    Attributes:
        spec: The parsed spec (``None`` when the schema did not validate).
        errors: Errors (the spec must not run when there are any).
        warnings: Warnings.
        source: The file name.
    """

    spec: WorkflowSpec | None
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)
    source: str = "<spec>"

    @property
    def ok(self) -> bool:
        """No errors."""
        return not self.errors and self.spec is not None


class SpecInvalid(ValueError):
    """A spec failed validation; ``errors`` lists every problem."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


# --- YAML with a line map -------------------------------------------------------------------


MAX_SPEC_BYTES = 1_000_000
"""Largest spec file accepted."""

MAX_SPEC_NODES = 20_000
"""Most YAML nodes a spec may expand to (aliases counted each time they are used)."""

MAX_SPEC_DEPTH = 64
"""Deepest nesting accepted."""


def _too_big(node: yaml.Node) -> str | None:
    """Why ``node`` is too big to validate (alias bombs, absurd nesting), else ``None``.

    Walks the composed tree without building anything: a "billion laughs" document is a
    few lines of anchors that expand to billions of nodes once constructed or validated.
    """
    count = 0
    todo: list[tuple[yaml.Node, int]] = [(node, 1)]
    while todo:
        current, depth = todo.pop()
        count += 1
        if count > MAX_SPEC_NODES:
            return f"the spec expands to more than {MAX_SPEC_NODES} YAML nodes (alias bomb?)"
        if depth > MAX_SPEC_DEPTH:
            return f"the spec nests deeper than {MAX_SPEC_DEPTH} levels"
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                todo.append((key, depth + 1))
                todo.append((value, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            todo.extend((item, depth + 1) for item in current.value)
    return None


class _LineMap:
    """Lines of the YAML nodes, by data path (``("steps", 0, "with", "email")``)."""

    def __init__(self) -> None:
        self.value_lines: dict[Path_, int] = {}
        self.key_lines: dict[Path_, int] = {}
        self.duplicates: list[tuple[Path_, int]] = []

    def add(self, node: yaml.Node, path: Path_) -> None:
        self.value_lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    self.duplicates.append(((*path, name), key.start_mark.line + 1))
                seen.add(name)
                self.key_lines[(*path, name)] = key.start_mark.line + 1
                self.add(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.add(item, (*path, i))

    def line(self, path: Path_, *, key: bool = True) -> int | None:
        """The line of ``path`` (its key's line when it is a mapping key), or its parent's."""
        p = tuple(path)
        while p:
            if key and p in self.key_lines:
                return self.key_lines[p]
            if p in self.value_lines:
                return self.value_lines[p]
            p = p[:-1]
        return self.value_lines.get((), 1)


# --- the validator --------------------------------------------------------------------------


class _Checker:
    def __init__(self, source: str, lines: _LineMap, raw: dict[str, Any]) -> None:
        self.source = source
        self.lines = lines
        self.raw = raw
        self.schema_valid = False
        self.errors: list[SpecError] = []
        self.warnings: list[SpecError] = []
        raw_steps = raw.get("steps")
        self.raw_steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
        self.raw_ids = {s.get("id") for s in self.raw_steps if isinstance(s, dict)}
        self.index: dict[str, int] = {}
        self.positions: dict[int, int] = {}
        for i, s in enumerate(self.raw_steps):
            if isinstance(s, dict) and isinstance(s.get("id"), str):
                self.index.setdefault(s["id"], i)

    # -- reporting

    def error(self, message: str, path: Path_ = (), step: str | None = None) -> None:
        self.errors.append(SpecError(message, self.lines.line(path), step, self.source))

    def warn(self, message: str, path: Path_ = (), step: str | None = None) -> None:
        self.warnings.append(
            SpecError(message, self.lines.line(path), step, self.source, severity="warning")
        )

    def step_path(self, step: Step | str, *rest: str | int) -> Path_:
        """The data path of (a field of) a step: by object when given one (ids may repeat)."""
        if isinstance(step, str):
            return ("steps", self.index.get(step, 0), *rest)
        return ("steps", self.positions.get(id(step), self.index.get(step.id, 0)), *rest)

    def locate(self, spec: WorkflowSpec) -> None:
        """Map each parsed step to its position in the YAML (skipping malformed steps)."""
        seen: dict[str, int] = {}
        for step in spec.steps:
            matches = [
                i
                for i, raw in enumerate(self.raw_steps)
                if isinstance(raw, dict) and raw.get("id") == step.id
            ]
            n = seen.get(step.id, 0)
            if n < len(matches):
                self.positions[id(step)] = matches[n]
            seen[step.id] = n + 1

    # -- schema

    def schema(self) -> WorkflowSpec | None:
        try:
            spec = WorkflowSpec.model_validate(self.raw)
        except PydanticValidationError as exc:
            for err in exc.errors():
                self._schema_error(err)
            return self._partial()
        self.schema_valid = True
        return spec

    def _schema_error(self, err: Any) -> None:
        loc: Path_ = tuple(err["loc"])
        # pydantic adds union/validator tags to locations (``function-before[...]``)
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or "-" in p)))
        step = None
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            raw = self.raw_steps[loc[1]] if loc[1] < len(self.raw_steps) else None
            step = (
                raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
            )
            step = step or f"#{loc[1] + 1}"
        field_name = ".".join(str(p) for p in loc[2:] if True) if step else ".".join(map(str, loc))
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown field {str(loc[-1])!r}"
            allowed = _allowed_fields(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            field_name = ""
        elif err["type"] == "missing":
            message = f"missing required field {str(loc[-1])!r}"
            field_name = ""
        self.error(f"{field_name}: {message}" if field_name else message, loc, step)

    def _partial(self) -> WorkflowSpec | None:
        """The valid parts, so later checks still run when some step is malformed."""
        from junction.workflows.spec import Parameter

        params: dict[str, Parameter] = {}
        raw_params = self.raw.get("parameters")
        if isinstance(raw_params, dict):
            for name, value in raw_params.items():
                try:
                    params[str(name)] = Parameter.model_validate(value or {})
                except PydanticValidationError:
                    continue
        steps: list[Step] = []
        for raw in self.raw_steps:
            try:
                steps.append(Step.model_validate(raw))
            except PydanticValidationError:
                continue
        if not steps:
            return None
        outputs = self.raw.get("outputs")
        return WorkflowSpec.model_construct(
            name=str(self.raw.get("name", "workflow")),
            parameters=params,
            steps=steps,
            outputs=outputs if isinstance(outputs, dict) else {},
            concurrency={},
        )

    # -- semantic checks

    def check(self, spec: WorkflowSpec) -> None:
        self.locate(spec)
        ids: set[str] = set()
        for i, step in enumerate(spec.steps):
            if step.id in ids:
                self.error(f"duplicate step id {step.id!r}", ("steps", i, "id"), step.id)
            ids.add(step.id)
        self.used: set[str] = set()
        for step in spec.steps:
            self._check_step(spec, step)
        self._check_templates(spec)
        self._check_graph(spec)
        self._check_outputs(spec)
        for name in spec.concurrency:
            from integrations.catalog import load_catalog

            if name not in load_catalog():
                self.error(f"concurrency names unknown integration {name!r}", ("concurrency", name))
            elif name not in self.used:
                self.warn(f"concurrency of {name!r}: no step uses it", ("concurrency", name))

    def _resolve_action(self, uses: str, path: Path_, step: str) -> Any:
        from integrations.errors import IntegrationError
        from integrations.registry import get_action

        integration, _, name = uses.partition(".")
        try:
            spec = get_action(integration, name)
        except IntegrationError as exc:
            self.error(exc.message, path, step)
            return None
        self.used.add(integration)
        return spec

    def _check_step(self, spec: WorkflowSpec, step: Step) -> None:
        from integrations.catalog import load_catalog
        from junction.workflows.capabilities import CAPABILITIES, get_capability

        sid = step.id
        target = step.target()
        if step.concurrency is not None and step.for_each is None:
            self.error(
                "concurrency applies to for_each steps only",
                self.step_path(step, "concurrency"),
                sid,
            )
        if step.for_each is not None:
            from junction.workflows.templating import _expression_source

            kind = self._template_type(spec, "{{ " + _expression_source(step.for_each) + " }}")
            if kind is not None and kind != "array":
                self.error(
                    f"for_each needs a list, but {step.for_each.strip()!r} is {kind}",
                    self.step_path(step, "for_each"),
                    sid,
                )
        if target.kind == "capability":
            if target.text not in CAPABILITIES:
                prefixes = {c.split(".")[0] for c in CAPABILITIES}
                if target.left in prefixes:
                    verbs = ", ".join(
                        c for c in sorted(CAPABILITIES) if c.startswith(target.left + ".")
                    )
                    message = f"unknown capability {target.text!r} ({verbs} exist)"
                else:
                    names = [*load_catalog().names, *prefixes]
                    close = difflib.get_close_matches(target.left, names, n=3)
                    hint = f"; did you mean {', '.join(close)}?" if close else ""
                    message = (
                        f"unknown integration or capability {target.left!r} in "
                        f"uses {step.uses!r}{hint}"
                    )
                self.error(message, self.step_path(step, "uses"), sid)
                return
            self._check_capability_step(spec, step, get_capability(target.text))
            return
        action = self._resolve_action(step.uses, self.step_path(step, "uses"), sid)
        if step.providers:
            self.error(
                "providers apply to capability steps only (use fallback)",
                self.step_path(step, "providers"),
                sid,
            )
        if action is None:
            return
        self._check_inputs(spec, step, action.input, step.with_, ("with",), action.name)
        self._check_effects(step, action.read_only, action.idempotent, step.uses)
        primary_caps = set(load_catalog().get(target.left).capabilities)
        for i, fb in enumerate(step.fallback):
            path = self.step_path(step, "fallback", i)
            uses = fb.uses if "." in fb.uses else f"{fb.uses}.{target.right}"
            if uses == step.uses:
                self.error(f"fallback {uses!r} is the step's own action", path, sid)
                continue
            fb_action = self._resolve_action(uses, path, sid)
            if fb_action is None:
                continue
            other = uses.partition(".")[0]
            if other != target.left and not (
                primary_caps & set(load_catalog().get(other).capabilities)
            ):
                self.error(
                    f"fallback {other!r} shares no capability with {target.left!r}", path, sid
                )
            inputs = fb.with_ if fb.with_ is not None else step.with_
            where: Path_ = ("fallback", i, "with") if fb.with_ is not None else ("with",)
            self._check_inputs(spec, step, fb_action.input, inputs, where, uses)
            if not fb_action.read_only and step.cache is not None:
                self.error(f"cache on side-effecting fallback {uses!r}", path, sid)

    def _check_capability_step(self, spec: WorkflowSpec, step: Step, cap: Any) -> None:
        sid = step.id
        self._check_inputs(spec, step, cap.input, step.with_, ("with",), cap.name)
        providers = {b.integration: b for b in cap.bindings}
        given = set(step.with_)
        chosen: list[str] = []
        for field_name, names in (
            ("providers", step.providers),
            ("fallback", [f.uses for f in step.fallback]),
        ):
            for i, name in enumerate(names):
                path = self.step_path(step, field_name, i)
                integration = name.partition(".")[0]
                if integration not in providers:
                    self.error(
                        f"{integration!r} does not provide {cap.name} (providers: "
                        f"{', '.join(providers)})",
                        path,
                        sid,
                    )
                    continue
                if "." in name and name != f"{integration}.{providers[integration].action}":
                    self.error(
                        f"{cap.name} on {integration} uses {providers[integration].action}, "
                        f"not {name.partition('.')[2]!r}",
                        path,
                        sid,
                    )
                fb_with = step.fallback[i].with_ if field_name == "fallback" else None
                missing = providers[integration].required - set(
                    fb_with if fb_with is not None else given
                )
                if missing:
                    self.error(
                        f"provider {integration!r} needs input(s) {', '.join(sorted(missing))}",
                        path,
                        sid,
                    )
                chosen.append(integration)
        if not step.providers:
            able = [b.integration for b in cap.bindings if b.required <= given]
            if not able:
                self.error(
                    f"no provider of {cap.name} can serve these inputs "
                    + "; ".join(
                        f"{b.integration} needs {', '.join(sorted(b.required))}"
                        for b in cap.bindings
                    ),
                    self.step_path(step, "with"),
                    sid,
                )
            chosen.extend(able)
        self.used.update(chosen)
        specs = cap.provider_actions(list(dict.fromkeys(chosen)))
        if specs:
            read_only = all(a.read_only for a in specs)
            idempotent = all(a.idempotent for a in specs)
            what = f"{cap.name} (via {', '.join(dict.fromkeys(chosen))})"
            self._check_effects(step, read_only, idempotent, what)

    def _check_effects(self, step: Step, read_only: bool, idempotent: bool, what: str) -> None:
        sid = step.id
        if step.cache is not None and not read_only:
            self.error(
                f"cache is for read-only actions; {what} has side effects",
                self.step_path(step, "cache"),
                sid,
            )
        if read_only and step.idempotency_key is not None:
            self.error(
                f"{what} is read-only: an idempotency_key means nothing here",
                self.step_path(step, "idempotency_key"),
                sid,
            )
        if not read_only and not idempotent:
            if step.retries:
                self.error(
                    f"retries on {what}, which is not idempotent, could duplicate its side "
                    "effect after a lost response (set retries: 0)",
                    self.step_path(step, "retries"),
                    sid,
                )
            else:
                self.warn(
                    f"{what} cannot be made idempotent; the client retries it only when the "
                    "request never reached the vendor",
                    self.step_path(step, "uses"),
                    sid,
                )

    # -- inputs against the action's model

    def _check_inputs(
        self,
        spec: WorkflowSpec | None,
        step: Step,
        model: type[BaseModel],
        inputs: Mapping[str, Any],
        where: Path_,
        what: str,
    ) -> None:
        sid = step.id
        fields = model.model_fields
        names: dict[str, str] = {}
        for name, info in fields.items():
            names[name] = name
            if isinstance(info.validation_alias, str):
                names[info.validation_alias] = name
            if info.alias:
                names[info.alias] = name
        for key in inputs:
            if key not in names:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(
                    f"{what} has no input {key!r}{hint}; inputs: {', '.join(fields)}",
                    self.step_path(step, *where, key),
                    sid,
                )
        given = {names[k] for k in inputs if k in names}
        missing = [n for n, info in fields.items() if info.is_required() and n not in given]
        if missing:
            self.error(
                f"{what} requires input(s) {', '.join(missing)}",
                self.step_path(step, *where) if inputs else self.step_path(step, "uses"),
                sid,
            )
        constants = {k: v for k, v in inputs.items() if k in names and not _has_template(v)}
        if constants and not (step.for_each and _mentions_item(inputs)):
            try:
                model.model_validate(constants)
            except PydanticValidationError as exc:
                for err in exc.errors():
                    loc = err["loc"]
                    if err["type"] == "missing" or (loc and loc[0] not in constants):
                        continue
                    if not loc and len(constants) < len([k for k in inputs if k in names]):
                        continue  # a model-level rule that templated values may satisfy
                    label = ".".join(str(p) for p in loc) or "inputs"
                    self.error(
                        f"{what} input {label}: {err['msg']}",
                        self.step_path(step, *where, *loc),
                        sid,
                    )
        schema = _schema_of(model)
        for key, value in inputs.items():
            if key not in names or not isinstance(value, str):
                continue
            expected = _types(schema.get("properties", {}).get(names[key], {}), schema)
            actual = self._template_type(spec, value)
            if expected and actual and not _compatible(actual, expected):
                self.error(
                    f"{what} input {key!r} expects {'/'.join(sorted(expected))}, but "
                    f"{value.strip()!r} is {actual}",
                    self.step_path(step, *where, key),
                    sid,
                )

    def _template_type(self, spec: WorkflowSpec | None, value: str) -> str | None:
        """The JSON type a single-expression template renders to, when known."""
        from junction.workflows.templating import _SINGLE

        match = _SINGLE.match(value)
        if spec is None or not match or "|" in match.group("expr"):
            return None
        try:
            refs = references(value)
        except TemplateError:
            return None
        if len(refs) != 1:
            return None
        (ref,) = refs
        expr = match.group("expr").strip()
        if expr != ".".join(ref):
            return None  # an operator or index: the type is not simply the reference's
        if ref[0] == "params" and len(ref) == 2 and ref[1] in spec.parameters:
            return spec.parameters[ref[1]].type.value
        if ref[0] == "steps" and len(ref) >= 3 and ref[2] == "output":
            resolved = self._output_schema(spec, ref[1], ref[3:])
            if isinstance(resolved, tuple):
                types = _types(resolved[0], resolved[1])
                if types and len(types - {"null"}) == 1:
                    return next(iter(types - {"null"}))
        return None

    def _output_schema(
        self, spec: WorkflowSpec, step_id: str, path: tuple[str, ...]
    ) -> tuple[dict[str, Any], dict[str, Any]] | str | None:
        """The schema of ``steps.<id>.output.<path>``: (node, root), or the missing field."""
        try:
            step = spec.step(step_id)
        except KeyError:
            return None
        target = step.target()
        if target.kind != "action":
            return None
        from integrations.errors import IntegrationError
        from integrations.registry import get_action

        try:
            output = get_action(target.left, target.right).output
        except IntegrationError:
            return None
        if output is None:
            return None
        if step.for_each is not None:
            output = list[output]  # type: ignore[valid-type]
        root = _adapter_schema(output)
        node: dict[str, Any] = root
        for seg in path:
            node = _deref(node, root)
            nxt = _child(node, seg, root)
            if nxt is None:
                return None
            if isinstance(nxt, str):
                return seg
            node = nxt
        return node, root

    # -- templates

    def _check_templates(self, spec: WorkflowSpec) -> None:
        ids = {s.id for s in spec.steps}
        for step in spec.steps:
            for key, value in spec.template_fields(step).items():
                path = _field_path(key)
                self._check_template_value(
                    spec,
                    step,
                    value,
                    self.step_path(step, *path),
                    ids,
                    key in _EXPRESSION_FIELDS,
                )
            for i, name in enumerate(step.needs):
                npath = self.step_path(step, "needs", i)
                if name == step.id:
                    self.error("needs itself", npath, step.id)
                elif name not in ids and name not in self.raw_ids:
                    close = difflib.get_close_matches(name, ids, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    self.error(f"needs unknown step {name!r}{hint}", npath, step.id)
            if step.when is not None and str(step.when).strip().lower() in {
                "false",
                "no",
                "0",
                "none",
            }:
                self.error(
                    "when is always false: the step (and what depends on it) never runs",
                    self.step_path(step, "when"),
                    step.id,
                )

    def _check_template_value(
        self,
        spec: WorkflowSpec,
        step: Step | None,
        value: Any,
        path: Path_,
        ids: set[str],
        expression: bool,
    ) -> None:
        sid = step.id if step else None
        for sub, text in _walk_strings(value, path):
            try:
                if expression:
                    check_syntax(text, expression=True)
                refs = references(text, expression=expression)
            except TemplateError as exc:
                self.error(str(exc), sub, sid)
                continue
            for ref in sorted(refs):
                self._check_reference(spec, step, ref, sub, ids)

    def _check_reference(
        self,
        spec: WorkflowSpec,
        step: Step | None,
        ref: tuple[str, ...],
        path: Path_,
        ids: set[str],
    ) -> None:
        sid = step.id if step else None
        root = ref[0]
        shown = ".".join(ref)
        if root == "loop":
            return  # jinja's loop variable inside {% for %}
        if root not in ROOTS or root == "inputs":
            allowed = ", ".join(sorted(ROOTS - {"inputs"}))
            self.error(
                f"unknown name {root!r} in template ({shown}); available: {allowed}", path, sid
            )
            return
        if root in {"item", "index"} and (step is None or step.for_each is None):
            self.error(f"{root!r} is only defined in for_each steps", path, sid)
            return
        if root == "params":
            if len(ref) < 2:
                return
            if ref[1] not in spec.parameters:
                close = difflib.get_close_matches(ref[1], spec.parameters, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.error(f"unknown parameter {ref[1]!r} in {shown}{hint}", path, sid)
            return
        if root == "workflow" and len(ref) > 1 and ref[1] != "name":
            self.error(f"unknown field {shown!r} (workflow has: name)", path, sid)
        if root == "run" and len(ref) > 1 and ref[1] != "id":
            self.error(f"unknown field {shown!r} (run has: id)", path, sid)
        if root != "steps":
            return
        if len(ref) < 2:
            self.error("steps must be followed by a step id (steps.<id>.output)", path, sid)
            return
        other = ref[1]
        if other not in ids:
            if other in self.raw_ids:
                return  # reported by the schema check
            close = difflib.get_close_matches(other, ids, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error(f"unknown step {other!r} in {shown}{hint}", path, sid)
            return
        if step is not None and other == step.id:
            self.error(f"step reads its own {'.'.join(ref[2:]) or 'result'} ({shown})", path, sid)
            return
        if len(ref) >= 3 and ref[2] not in _STEP_FIELDS:
            self.error(
                f"unknown field {ref[2]!r} of step {other!r} in {shown} "
                f"(a step has: {', '.join(sorted(_STEP_FIELDS))})",
                path,
                sid,
            )
            return
        if len(ref) >= 4 and ref[2] == "output":
            missing = self._output_schema(spec, other, ref[3:])
            if isinstance(missing, str):
                self.warn(
                    f"{shown}: the output of {spec.step(other).uses} declares no field {missing!r}",
                    path,
                    sid,
                )

    # -- the graph

    def _check_graph(self, spec: WorkflowSpec) -> None:
        deps = spec.dependencies()
        cycles = _cycles(deps, [s.id for s in spec.steps])
        in_cycle: set[str] = set()
        for cycle in cycles:
            in_cycle.update(cycle)
            self.error(
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
                self.step_path(cycle[0], "id"),
                cycle[0],
            )
        never = {
            s.id
            for s in spec.steps
            if s.when is not None and str(s.when).strip().lower() in {"false", "no", "0", "none"}
        }
        blocked = in_cycle | never
        changed = True
        down: set[str] = set()
        while changed:
            changed = False
            for sid, ups in deps.items():
                if sid not in blocked and ups & blocked:
                    blocked.add(sid)
                    down.add(sid)
                    changed = True
        for sid in sorted(down, key=lambda s: self.index.get(s, 0)):
            culprit = sorted(deps[sid] & blocked)
            self.error(
                f"unreachable: depends on {', '.join(culprit)}, which can never complete",
                self.step_path(sid, "id"),
                sid,
            )
        read: set[str] = set()
        for ups in deps.values():
            read |= ups
        for value in spec.outputs.values():
            from junction.workflows.templating import step_references

            read |= step_references(value)
        for step in spec.steps:
            if step.id in read:
                continue
            target = step.target()
            if target.kind != "action":
                continue
            from integrations.errors import IntegrationError
            from integrations.registry import get_action

            try:
                read_only = get_action(target.left, target.right).read_only
            except IntegrationError:
                continue
            if read_only:
                self.warn(
                    "read-only step whose output no step or output reads (dead step)",
                    self.step_path(step, "id"),
                    step.id,
                )

    def _check_outputs(self, spec: WorkflowSpec) -> None:
        ids = {s.id for s in spec.steps}
        deps = spec.dependencies()
        optional = {s.id for s in spec.steps if s.when is not None or s.continue_on_error}
        changed = True
        while changed:  # dependents of a step that may not run may not run either
            before = len(optional)
            optional |= {sid for sid, ups in deps.items() if ups & optional}
            changed = len(optional) != before
        for name, value in spec.outputs.items():
            self._check_template_value(spec, None, value, ("outputs", name), ids, False)
            try:
                refs = references(value)
            except TemplateError:
                continue
            guarded = {r[1] for r in refs if len(r) >= 3 and r[0] == "steps" and r[2] == "status"}
            for ref in sorted(refs):
                reads_output = len(ref) >= 4 and ref[0] == "steps" and ref[2] == "output"
                if reads_output and ref[1] in optional and ref[1] not in guarded:
                    self.warn(
                        f"output {name!r} reads {'.'.join(ref)}, but step {ref[1]!r} may be "
                        f"skipped (guard with steps.{ref[1]}.status == 'ok')",
                        ("outputs", name),
                    )


# --- schema helpers ---------------------------------------------------------------------------


def _has_template(value: Any) -> bool:
    from junction.workflows.templating import has_template

    return any(has_template(s) for _, s in _walk_strings(value, ()))


def _mentions_item(value: Any) -> bool:
    return _has_template(value)


def _walk_strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk_strings(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, (*path, i))


def _field_path(key: str) -> Path_:
    if key.startswith("fallback["):
        index = int(key[len("fallback[") : key.index("]")])
        return ("fallback", index, "with")
    return (key,)


def _allowed_fields(loc: Path_) -> list[str]:
    from junction.workflows.spec import CacheSpec, Fallback, Parameter

    parents = [p for p in loc[:-1] if isinstance(p, str)]
    model: type[BaseModel] = WorkflowSpec
    if parents[-1:] == ["cache"]:
        model = CacheSpec
    elif "fallback" in parents:
        model = Fallback
    elif parents[:1] == ["parameters"]:
        model = Parameter
    elif parents[:1] == ["steps"]:
        model = Step
    return [info.alias or name for name, info in model.model_fields.items()]


_SCHEMAS: dict[Any, dict[str, Any]] = {}


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return _adapter_schema(model, "validation")


def _adapter_schema(
    tp: Any, mode: Literal["validation", "serialization"] = "serialization"
) -> dict[str, Any]:
    """JSON schema of ``tp`` by Python field names (outputs are ``model_dump(mode="json")``)."""
    key = f"{mode}:{tp!r}"
    if key not in _SCHEMAS:
        try:
            _SCHEMAS[key] = TypeAdapter(tp).json_schema(mode=mode, by_alias=False)
        except Exception:  # some types have no JSON schema; they are then unchecked
            _SCHEMAS[key] = {}
    return _SCHEMAS[key]


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in node and seen < 20:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root.get("$defs", {}).get(name, {})
        seen += 1
    return node


def _child(node: dict[str, Any], seg: str, root: dict[str, Any]) -> dict[str, Any] | str | None:
    """The schema below ``seg``; ``seg`` itself when undeclared; ``None`` when unknown."""
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        found: list[dict[str, Any] | str | None] = []
        for b in branches:
            b = _deref(b, root)
            if b.get("type") == "null":
                continue
            found.append(_child(b, seg, root))
        good = [f for f in found if isinstance(f, dict)]
        if good:
            return good[0]
        return seg if found and all(isinstance(f, str) for f in found) else None
    kind = node.get("type")
    if kind == "array" or "items" in node:
        return _deref(node.get("items", {}), root) if seg.isdigit() else seg
    props = node.get("properties")
    if props is not None:
        if seg in props:
            return _deref(props[seg], root)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return _deref(extra, root)
        return seg
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return _deref(node["additionalProperties"], root)
    return None


def _types(node: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """JSON types a schema node accepts (empty = anything)."""
    node = _deref(node, root)
    out: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for b in node.get(key, []):
            sub = _types(b, root)
            if not sub:
                return set()
            out |= sub
    if node.get("allOf"):
        out |= _types(node["allOf"][0], root)
    kind = node.get("type")
    if isinstance(kind, str):
        out.add(kind)
    elif isinstance(kind, list):
        out.update(kind)
    for value in [*node.get("enum", []), *([node["const"]] if "const" in node else [])]:
        out.add(_json_type(value))
    if "properties" in node:
        out.add("object")
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _compatible(actual: str, expected: set[str]) -> bool:
    if actual in expected:
        return True
    if actual == ParamType.INTEGER.value and "number" in expected:
        return True
    # pydantic (lax) turns an integer into a float and ISO strings into dates/times
    return actual == "string" and bool(expected & {"string"})


def _cycles(deps: Mapping[str, set[str]], order: list[str]) -> list[list[str]]:
    """Each elementary cycle found by DFS, once (rotated to start at its first step)."""
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        color[node] = 1
        stack.append(node)
        for up in sorted(deps.get(node, set()), key=order.index):
            if color.get(up, 0) == 0:
                visit(up)
            elif color.get(up) == 1:
                cycle = stack[stack.index(up) :]
                cycle = list(reversed(cycle))  # dependency order: a needs b ... -> run order
                key = frozenset(cycle)
                if key not in seen_sets:
                    seen_sets.add(key)
                    start = min(cycle, key=order.index)
                    i = cycle.index(start)
                    found.append(cycle[i:] + cycle[:i])
        stack.pop()
        color[node] = 2

    for node in order:
        if color.get(node, 0) == 0:
            visit(node)
    return found


# --- entry points ------------------------------------------------------------------------------


def validate_text(text: str, *, source: str = "<spec>") -> ValidationResult:
    """Validate a spec's YAML text (no side effect: nothing is sent anywhere).

    Args:
        text: The YAML.
        source: File name shown in errors.

    Returns:
        The parsed spec (when the schema validated) and every error and warning.
    """
    lines = _LineMap()
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        message = f"the spec is larger than {MAX_SPEC_BYTES} bytes"
        return ValidationResult(None, [SpecError(message, None, None, source)], source=source)
    # Safe loading only (no Python tags); libyaml's parser when available (~10x faster).
    # One parse: the composed tree gives the line map, then is constructed.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        problem = _too_big(node) if node is not None else None
        if problem is not None:
            return ValidationResult(None, [SpecError(problem, 1, None, source)], source=source)
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return ValidationResult(
            None, [SpecError(f"invalid YAML: {problem}", line, None, source)], source=source
        )
    finally:
        loader.dispose()
    if node is not None:
        lines.add(node, ())
    if not isinstance(raw, dict):
        return ValidationResult(
            None,
            [
                SpecError(
                    "a workflow spec is a YAML mapping (name, parameters, steps)", 1, None, source
                )
            ],
            source=source,
        )
    checker = _Checker(source, lines, raw)
    for path, line in lines.duplicates:
        checker.errors.append(
            SpecError(f"duplicate key {path[-1]!r}", line, _step_of(raw, path), source)
        )
    spec = checker.schema()
    if spec is not None:
        checker.check(spec)
    errors = sorted(checker.errors, key=lambda e: e.line or 0)
    warnings = sorted(checker.warnings, key=lambda e: e.line or 0)
    return ValidationResult(spec if checker.schema_valid else None, errors, warnings, source)


def _step_of(raw: dict[str, Any], path: Path_) -> str | None:
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        steps = raw.get("steps")
        if isinstance(steps, list) and path[1] < len(steps) and isinstance(steps[path[1]], dict):
            value = steps[path[1]].get("id")
            return value if isinstance(value, str) else None
    return None


def validate_file(path: str | Path) -> ValidationResult:
    """Validate the spec at ``path`` (or a built-in spec's name).

    Raises:
        FileNotFoundError: No such file or built-in spec.
    """
    resolved = resolve_spec_path(path)
    return validate_text(resolved.read_text("utf-8"), source=str(path))


def load_workflow(path: str | Path) -> WorkflowSpec:
    """Load and fully validate a spec; what the runner calls before any side effect.

    Args:
        path: A file, or the name of a built-in spec (``employee_onboarding``).

    Raises:
        FileNotFoundError: No such file or built-in spec.
        SpecInvalid: With every error.
    """
    result = validate_file(path)
    if not result.ok or result.spec is None:
        raise SpecInvalid(result.errors)
    return result.spec


def builtin_specs() -> dict[str, Path]:
    """The built-in specs (``flows/specs/*.yaml``), by file stem."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


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
