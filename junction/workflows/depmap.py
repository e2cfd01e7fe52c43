"""Dependency map: which workflows and steps use which services, and which services fail together.

Two sources:

- **Specs** (static): each workflow's steps, the services each step can call (its
  primary provider first, then its fallbacks / other capability providers), and the
  step-to-step dependencies. A workflow depends on every service its steps call. A
  service B depends on service A when some step on B runs only after a step on A: B's
  *workflow traffic* is gated by A (while A is down, B sees fewer workflow calls and a
  drop in volume, not more errors; B itself is not down).
- **Run history** (observed): the metrics store's ``calls`` rows (plus ``probes``) in
  fixed windows (default one minute). A service *fails* in a window when at least
  ``min_failure_rate`` of its calls there failed. For each pair of services:
  ``both`` (windows where both failed), the Jaccard index ``both / (a + b - both)`` and
  the conditional probabilities ``P(b fails | a fails) = both / a`` and the reverse.

API for alert suppression (the monitor): :func:`service_dependencies` (what depends on
what), :func:`dependents_of` (what a failing service takes down with it) and
:meth:`DependencyMap.cofailure_groups`. Export: :meth:`DependencyMap.to_mermaid`,
:meth:`DependencyMap.to_dot`, :meth:`DependencyMap.to_dict`. CLI: ``junction workflow
graph [--format mermaid|dot|json]``.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from integrations.errors import UnknownCapabilityError
from junction.workflows.builtins import builtin_specs
from junction.workflows.capabilities import candidates
from junction.workflows.spec import WorkflowSpec
from junction.workflows.validate import validate_file

if TYPE_CHECKING:
    from junction.store import MetricsStore

__all__ = [
    "CoFailure",
    "DependencyMap",
    "StepNode",
    "build_map",
    "cofailures",
    "cofailures_from_windows",
    "dependents_of",
    "service_dependencies",
]

WORKFLOW_PREFIX = "workflow:"
"""Keys of workflows in :func:`service_dependencies` (services are bare names)."""


@dataclass(frozen=True)
class StepNode:
    """One step of a workflow and the services it may call.

    Attributes:
        workflow: The workflow's name.
        step: The step id.
        uses: The step's ``uses``.
        services: Services in preference order (primary first).
        fallbacks: The subset of ``services`` used only as fallbacks.
        needs: Upstream steps (explicit and from templates).
    """

    workflow: str
    step: str
    uses: str
    services: tuple[str, ...]
    fallbacks: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()

    @property
    def primary(self) -> tuple[str, ...]:
        """The services that are not only fallbacks."""
        return tuple(s for s in self.services if s not in self.fallbacks)


@dataclass(frozen=True)
class CoFailure:
    """How often two services failed in the same window.

    Attributes:
        a: One service (alphabetically first).
        b: The other.
        both: Windows where both failed.
        a_failed: Windows where ``a`` failed.
        b_failed: Windows where ``b`` failed.
        windows: Windows where both had calls.
    """

    a: str
    b: str
    both: int
    a_failed: int
    b_failed: int
    windows: int

    @property
    def jaccard(self) -> float:
        """``both / (a_failed + b_failed - both)``."""
        union = self.a_failed + self.b_failed - self.both
        return self.both / union if union else 0.0

    @property
    def p_b_given_a(self) -> float:
        """P(b fails | a fails)."""
        return self.both / self.a_failed if self.a_failed else 0.0

    @property
    def p_a_given_b(self) -> float:
        """P(a fails | b fails)."""
        return self.both / self.b_failed if self.b_failed else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with the derived measures."""
        return {
            **asdict(self),
            "jaccard": round(self.jaccard, 4),
            "p_b_given_a": round(self.p_b_given_a, 4),
            "p_a_given_b": round(self.p_a_given_b, 4),
        }


@dataclass
class DependencyMap:
    """Workflows -> steps -> services, and observed co-failures.

    Attributes:
        steps: Every step of every workflow.
        cofailures: Pairs of services that failed together (strongest first).
    """

    steps: list[StepNode] = field(default_factory=list)
    cofailures: list[CoFailure] = field(default_factory=list)

    @property
    def workflows(self) -> dict[str, list[StepNode]]:
        """Steps by workflow, in spec order."""
        out: dict[str, list[StepNode]] = defaultdict(list)
        for node in self.steps:
            out[node.workflow].append(node)
        return dict(out)

    @property
    def services(self) -> set[str]:
        """Every service a step may call or history mentions."""
        found = {s for n in self.steps for s in n.services}
        found |= {c.a for c in self.cofailures} | {c.b for c in self.cofailures}
        return found

    def service_dependencies(self) -> dict[str, set[str]]:
        """What depends on what: dependent -> the services it needs.

        Keys are services and ``workflow:<name>``. A service depends on the services of
        the steps upstream of its steps (primary providers only: a fallback is there to
        survive its primary, not to depend on); a workflow on every service it calls,
        fallbacks included.
        """
        deps: dict[str, set[str]] = defaultdict(set)
        for name, nodes in self.workflows.items():
            by_id = {n.step: n for n in nodes}
            upstream = _closure({n.step: set(n.needs) for n in nodes})
            wf = deps[WORKFLOW_PREFIX + name]
            for node in nodes:
                wf.update(node.services)
                for service in node.primary:
                    for up in upstream.get(node.step, set()):
                        deps[service].update(s for s in by_id[up].primary if s != service)
        return {k: v for k, v in deps.items() if v}

    def dependents_of(self, service: str) -> set[str]:
        """Services and ``workflow:<name>`` keys that depend on ``service``."""
        return {k for k, v in self.service_dependencies().items() if service in v}

    def cofailure_groups(self, *, min_jaccard: float = 0.5, min_both: int = 3) -> list[set[str]]:
        """Services that fail together: connected components of the strong pairs.

        Args:
            min_jaccard: A pair is strong from this Jaccard index.
            min_both: ... and with at least this many shared failing windows.
        """
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for c in self.cofailures:
            if c.jaccard >= min_jaccard and c.both >= min_both:
                parent[find(c.a)] = find(c.b)
        groups: dict[str, set[str]] = defaultdict(set)
        for x in list(parent):
            groups[find(x)].add(x)
        return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: sorted(g))

    # -- export

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``junction workflow graph --format json``)."""
        return {
            "workflows": {
                name: [
                    {
                        "step": n.step,
                        "uses": n.uses,
                        "services": list(n.services),
                        "fallbacks": list(n.fallbacks),
                        "needs": list(n.needs),
                    }
                    for n in nodes
                ]
                for name, nodes in self.workflows.items()
            },
            "service_dependencies": {
                k: sorted(v) for k, v in sorted(self.service_dependencies().items())
            },
            "cofailures": [c.to_dict() for c in self.cofailures],
        }

    def to_mermaid(self, *, min_jaccard: float = 0.0) -> str:
        """A Mermaid flowchart: a subgraph per workflow, services as cylinders.

        Solid arrows: step order and the services steps call; dotted arrows: fallbacks;
        dotted lines between services: co-failures (Jaccard index, shared windows).
        """
        lines = ["flowchart LR"]
        for name, nodes in self.workflows.items():
            lines.append(f'  subgraph {_mid("wf", name)}["{_mlabel(name)}"]')
            for n in nodes:
                lines.append(f'    {_mid(name, n.step)}["{_mlabel(n.step)}<br/>{_mlabel(n.uses)}"]')
            lines.append("  end")
        for service in sorted(self.services):
            lines.append(f'  {_mid("svc", service)}[("{_mlabel(service)}")]')
        for name, nodes in self.workflows.items():
            for n in nodes:
                for up in n.needs:
                    lines.append(f"  {_mid(name, up)} --> {_mid(name, n.step)}")
                for s in n.services:
                    arrow = "-.->|fallback|" if s in n.fallbacks else "-->"
                    lines.append(f"  {_mid(name, n.step)} {arrow} {_mid('svc', s)}")
        for c in self.cofailures:
            if c.jaccard >= min_jaccard and c.both:
                label = f"co-fail J={c.jaccard:.2f} n={c.both}"
                lines.append(f'  {_mid("svc", c.a)} -.-|"{label}"| {_mid("svc", c.b)}')
        return "\n".join(lines) + "\n"

    def to_dot(self, *, min_jaccard: float = 0.0) -> str:
        """A Graphviz digraph: a cluster per workflow, services as cylinders."""
        lines = [
            "digraph junction {",
            "  rankdir=LR;",
            '  node [fontname="Helvetica", fontsize=10];',
        ]
        for i, (name, nodes) in enumerate(self.workflows.items()):
            lines.append(f"  subgraph cluster_{i} {{")
            lines.append(f"    label={_dq(name)};")
            for n in nodes:
                label = f"{n.step}\\n{n.uses}"
                lines.append(f'    {_dq(f"{name}/{n.step}")} [shape=box, label="{_desc(label)}"];')
            lines.append("  }")
        for service in sorted(self.services):
            lines.append(f"  {_dq('svc/' + service)} [shape=cylinder, label={_dq(service)}];")
        for name, nodes in self.workflows.items():
            for n in nodes:
                for up in n.needs:
                    lines.append(f"  {_dq(f'{name}/{up}')} -> {_dq(f'{name}/{n.step}')};")
                for s in n.services:
                    style = ' [style=dashed, label="fallback"]' if s in n.fallbacks else ""
                    lines.append(f"  {_dq(f'{name}/{n.step}')} -> {_dq('svc/' + s)}{style};")
        for c in self.cofailures:
            if c.jaccard >= min_jaccard and c.both:
                label = f"J={c.jaccard:.2f} n={c.both}"
                lines.append(
                    f"  {_dq('svc/' + c.a)} -> {_dq('svc/' + c.b)} "
                    f'[dir=none, style=dotted, color=red, label="{label}"];'
                )
        lines.append("}")
        return "\n".join(lines) + "\n"


def _mid(*parts: str) -> str:
    """A Mermaid node id (letters, digits, underscores)."""
    return "_".join(re.sub(r"[^A-Za-z0-9_]", "_", p) for p in parts)


def _mlabel(text: str) -> str:
    return text.replace('"', "#quot;")


def _desc(text: str) -> str:
    return text.replace('"', '\\"')


def _dq(text: str) -> str:
    return '"' + _desc(text) + '"'


def _closure(deps: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Every transitive upstream of each node (cycles tolerated)."""
    out: dict[str, set[str]] = {}
    for start in deps:
        seen: set[str] = set()
        todo = list(deps[start])
        while todo:
            node = todo.pop()
            if node in seen or node == start:
                continue
            seen.add(node)
            todo.extend(deps.get(node, ()))
        out[start] = seen
    return out


# --- from specs ---------------------------------------------------------------------------------


def step_nodes(spec: WorkflowSpec) -> list[StepNode]:
    """The :class:`StepNode` of each step of ``spec``.

    Unknown capabilities or providers (an invalid spec) contribute what can be resolved.
    """
    deps = spec.dependencies()
    nodes: list[StepNode] = []
    for step in spec.steps:
        try:
            found = candidates(step)
        except UnknownCapabilityError:
            found = []
        services = list(dict.fromkeys(c.integration for c in found))
        if not services:
            services = [step.uses.partition(".")[0]]
        primary = {c.integration for c in found if not c.fallback}
        fallbacks = tuple(s for s in services if s not in primary and found)
        nodes.append(
            StepNode(
                workflow=spec.name,
                step=step.id,
                uses=step.uses,
                services=tuple(services),
                fallbacks=fallbacks,
                needs=tuple(s.id for s in spec.steps if s.id in deps.get(step.id, set())),
            )
        )
    return nodes


_BUILTIN_CACHE: dict[tuple[tuple[str, int], ...], list[WorkflowSpec]] = {}


def _builtin() -> list[WorkflowSpec]:
    """The valid built-in specs, re-read only when a file changed (the monitor asks often)."""
    paths = list(builtin_specs().values())
    key = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
    if key not in _BUILTIN_CACHE:
        specs = []
        for path in paths:
            result = validate_file(path)
            if result.spec is not None:
                specs.append(result.spec)
        _BUILTIN_CACHE.clear()
        _BUILTIN_CACHE[key] = specs
    return list(_BUILTIN_CACHE[key])


def build_map(
    specs: Iterable[WorkflowSpec] | None = None,
    *,
    store: MetricsStore | None = None,
    since: datetime | None = None,
    window_seconds: int = 60,
    min_failure_rate: float = 0.5,
) -> DependencyMap:
    """The dependency map of ``specs`` (default: the built-in specs) and, with a store,
    the co-failures observed since ``since``.

    Args:
        specs: Workflows to map.
        store: The metrics store to read run history from.
        since: Only history from this time on.
        window_seconds: Width of a co-failure window.
        min_failure_rate: A service fails in a window from this share of failed calls.
    """
    chosen = list(specs) if specs is not None else _builtin()
    nodes = [n for spec in chosen for n in step_nodes(spec)]
    found = (
        cofailures(
            store, since=since, window_seconds=window_seconds, min_failure_rate=min_failure_rate
        )
        if store is not None
        else []
    )
    return DependencyMap(steps=nodes, cofailures=found)


def service_dependencies(specs: Iterable[WorkflowSpec] | None = None) -> dict[str, set[str]]:
    """What depends on what, from the specs (default: the built-in specs).

    Returns:
        Dependent (a service, or ``workflow:<name>``) -> the services it needs. Use it to
        suppress alerts of dependents while a service they need is down.
    """
    return build_map(specs).service_dependencies()


def dependents_of(service: str, specs: Iterable[WorkflowSpec] | None = None) -> set[str]:
    """Services and ``workflow:<name>`` keys that need ``service`` (from the specs)."""
    return build_map(specs).dependents_of(service)


# --- from run history ---------------------------------------------------------------------------


def cofailures_from_windows(
    windows: Mapping[Any, Mapping[str, tuple[int, int]]], *, min_failure_rate: float = 0.5
) -> list[CoFailure]:
    """Co-failure counts from per-window call counts.

    Args:
        windows: Window key -> service -> (calls, failed calls).
        min_failure_rate: A service fails in a window from this share of failed calls.

    Returns:
        One entry per pair that failed together at least once, strongest (Jaccard) first.
    """
    failed_in: dict[str, set[Any]] = defaultdict(set)
    active_in: dict[str, set[Any]] = defaultdict(set)
    for key, services in windows.items():
        for service, (calls, failed) in services.items():
            if calls <= 0:
                continue
            active_in[service].add(key)
            if failed / calls >= min_failure_rate:
                failed_in[service].add(key)
    out: list[CoFailure] = []
    for a, b in itertools.combinations(sorted(failed_in), 2):
        both = len(failed_in[a] & failed_in[b])
        if not both:
            continue
        out.append(
            CoFailure(
                a=a,
                b=b,
                both=both,
                a_failed=len(failed_in[a]),
                b_failed=len(failed_in[b]),
                windows=len(active_in[a] & active_in[b]),
            )
        )
    out.sort(key=lambda c: (-c.jaccard, -c.both, c.a, c.b))
    return out


def cofailures(
    store: MetricsStore,
    *,
    since: datetime | None = None,
    window_seconds: int = 60,
    min_failure_rate: float = 0.5,
    include_probes: bool = True,
) -> list[CoFailure]:
    """Co-failures observed in the store's ``calls`` (and ``probes``) rows.

    Args:
        store: The metrics store.
        since: Only rows from this time on.
        window_seconds: Window width.
        min_failure_rate: A service fails in a window from this share of failures.
        include_probes: Count health probes as calls too.
    """
    width = max(1, int(window_seconds))
    sources = ["SELECT ts, service, ok FROM calls"]
    if include_probes:
        sources.append("SELECT ts, service, ok FROM probes")
    where = "WHERE ts >= ?" if since is not None else ""
    sql = (
        f"SELECT CAST(floor(epoch(ts) / {width}) AS BIGINT) AS w, service, "
        f"count(*) AS calls, sum(CASE WHEN ok THEN 0 ELSE 1 END) AS failed "
        f"FROM ({' UNION ALL '.join(sources)}) {where} GROUP BY 1, 2"
    )
    try:
        frame = store.query(sql, [since] if since is not None else None)
    except Exception as exc:  # no segment yet: DuckDB has no view (or an empty glob)
        if "does not exist" in str(exc) or "No files found" in str(exc):
            return []
        raise
    windows: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
    for w, service, calls, failed in frame.itertuples(index=False, name=None):
        windows[int(w)][str(service)] = (int(calls), int(failed))
    return cofailures_from_windows(windows, min_failure_rate=min_failure_rate)
