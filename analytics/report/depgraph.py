"""The dependency graph's layout: workflows as bands, steps in columns, services on the
right, computed here and drawn by the ``depgraph.svg.j2`` template (no JS, no Graphviz).

Each workflow is a band; its steps sit in columns by dependency depth (longest ``needs``
path from a root), services in a column on the right ordered by the mean height of the
steps calling them (fewer crossings). Edges: step order (dark arrows), step -> service
(grey, dashed for fallbacks), co-failures between services (red dotted arcs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from junction.workflows.depmap import DependencyMap, StepNode

NODE_W, NODE_H, GAP_X, GAP_Y, PAD, HEAD = 150, 34, 40, 12, 16, 22
SERVICE_W, SERVICE_H = 120, 26
MIN_COFAILURE_JACCARD = 0.3
"""Co-failures weaker than this are left out of the drawing."""

EdgeKind = Literal["order", "service", "fallback", "cofailure"]


@dataclass(frozen=True)
class Box:
    """A step or service box: top-left corner and its text."""

    x: float
    y: float
    label: str
    detail: str = ""


@dataclass(frozen=True)
class Band:
    """A workflow's background band."""

    name: str
    y: float
    height: float


@dataclass(frozen=True)
class Edge:
    """A cubic curve from (x1, y1) to (x2, y2) through control points (c1, c2)."""

    kind: EdgeKind
    x1: float
    y1: float
    c1x: float
    c1y: float
    c2x: float
    c2y: float
    x2: float
    y2: float
    title: str = ""


@dataclass
class GraphLayout:
    """Everything the SVG template draws, in SVG user units."""

    width: float
    height: float
    band_width: float
    bands: list[Band] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    steps: list[Box] = field(default_factory=list)
    services: list[Box] = field(default_factory=list)
    node_w: float = NODE_W
    node_h: float = NODE_H
    service_w: float = SERVICE_W
    service_h: float = SERVICE_H
    pad: float = PAD


def layers(nodes: Sequence[StepNode]) -> dict[str, int]:
    """Column of each step: the longest ``needs`` path from a root (cycles cut)."""
    by_id = {n.step: n for n in nodes}
    layer: dict[str, int] = {}

    def depth(step: str, seen: frozenset[str]) -> int:
        if step not in layer:
            ups = [u for u in by_id[step].needs if u in by_id and u not in seen]
            layer[step] = 0 if not ups else 1 + max(depth(u, seen | {step}) for u in ups)
        return layer[step]

    for n in nodes:
        depth(n.step, frozenset())
    return layer


def _curve(kind: EdgeKind, x1: float, y1: float, x2: float, y2: float) -> Edge:
    mx = (x1 + x2) / 2
    return Edge(kind, x1, y1, mx, y1, mx, y2, x2, y2)


def layout(dep: DependencyMap | None, *, max_services: int = 40) -> GraphLayout | None:
    """The graph's layout, or ``None`` when there is no workflow to draw."""
    workflows = dep.workflows if dep is not None else {}
    if not workflows:
        return None
    pos: dict[tuple[str, str], tuple[float, float]] = {}
    bands: list[Band] = []
    y: float = PAD
    max_layer = 0
    for name, nodes in workflows.items():
        layer = layers(nodes)
        rows: dict[int, int] = {}
        top = y + HEAD
        for n in nodes:
            lyr = layer[n.step]
            row = rows.get(lyr, 0)
            rows[lyr] = row + 1
            pos[(name, n.step)] = (PAD + lyr * (NODE_W + GAP_X), top + row * (NODE_H + GAP_Y))
            max_layer = max(max_layer, lyr)
        band_h = HEAD + max(rows.values()) * (NODE_H + GAP_Y)
        bands.append(Band(name, y, band_h))
        y += band_h + GAP_Y
    total_h = max(y, 100)
    svc_x = PAD + (max_layer + 1) * (NODE_W + GAP_X) + 80
    callers: dict[str, list[float]] = {}
    for name, nodes in workflows.items():
        for n in nodes:
            for s in n.services:
                callers.setdefault(s, []).append(pos[(name, n.step)][1])
    services = sorted(callers, key=lambda s: (sum(callers[s]) / len(callers[s]), s))
    services = services[:max_services]
    step_y = max(SERVICE_H + 8, (total_h - 2 * PAD) / max(1, len(services)))
    spos = {s: (svc_x, PAD + i * step_y) for i, s in enumerate(services)}
    out = GraphLayout(
        width=svc_x + SERVICE_W + 10 + PAD,
        height=max(total_h, PAD * 2 + len(services) * step_y),
        band_width=svc_x - 60,
        bands=bands,
    )
    for name, nodes in workflows.items():
        for n in nodes:
            x, yy = pos[(name, n.step)]
            for up in n.needs:
                if (name, up) in pos:
                    ux, uy = pos[(name, up)]
                    out.edges.append(
                        _curve("order", ux + NODE_W, uy + NODE_H / 2, x, yy + NODE_H / 2)
                    )
            for s in n.services:
                if s in spos:
                    sx, sy = spos[s]
                    kind: EdgeKind = "fallback" if s in n.fallbacks else "service"
                    out.edges.append(
                        _curve(kind, x + NODE_W, yy + NODE_H / 2, sx, sy + SERVICE_H / 2)
                    )
            out.steps.append(Box(x, yy, n.step[:22], n.uses[:26]))
    for c in dep.cofailures if dep is not None else []:
        if c.a in spos and c.b in spos and c.both and c.jaccard >= MIN_COFAILURE_JACCARD:
            (ax, ay), (bx, by) = spos[c.a], spos[c.b]
            r = 30 + abs(by - ay) / 4
            ya, yb = ay + SERVICE_H / 2, by + SERVICE_H / 2
            out.edges.append(
                Edge(
                    "cofailure",
                    ax + SERVICE_W,
                    ya,
                    ax + SERVICE_W + r,
                    ya,
                    bx + SERVICE_W + r,
                    yb,
                    bx + SERVICE_W,
                    yb,
                    title=f"co-failure J={c.jaccard:.2f} n={c.both}",
                )
            )
    out.services = [Box(sx, sy, s) for s, (sx, sy) in spos.items()]
    return out


__all__ = ["Band", "Box", "Edge", "GraphLayout", "layers", "layout"]
