"""A lineage (``services.lineage``) laid out as an SVG picture: one column per step from the
start (the start in the middle, what it came from to the left, what came from it to the
right), one box per node, one line per edge. Atom and model nodes link to their pages."""

from __future__ import annotations

from dataclasses import dataclass

from hartonomous.services.lineage import Lineage, LineageNode

__all__ = ["Picture", "PlacedNode", "lay_out"]

COLUMN = 220
ROW = 56
BOX_WIDTH = 180
BOX_HEIGHT = 36
MARGIN = 20


@dataclass(frozen=True)
class PlacedNode:
    node: LineageNode
    x: int
    y: int
    href: str | None
    text: str


@dataclass(frozen=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    relationship: str


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    nodes: list[PlacedNode]
    lines: list[Line]


# A node kind (sync/graph.py's node ids, "kind:atom hex") and the UI pages that show it.
_PAGES = {"atom": "atoms", "model": "models"}


def _href(node_id: str) -> str | None:
    kind, _, rest = node_id.partition(":")
    page = _PAGES.get(kind)
    return f"/ui/{page}/{rest}" if page and rest else None


def _text(node: LineageNode) -> str:
    kind, _, rest = node.node_id.partition(":")
    short = rest.rsplit(":", 1)[-1][:12]
    return f"{node.label or kind} {short}"


def lay_out(walk: Lineage, *, upward: bool) -> Picture:
    """Columns by depth (leftwards when ``upward``), rows in the walk's order."""
    by_depth: dict[int, list[LineageNode]] = {}
    for node in walk.nodes:
        by_depth.setdefault(node.depth, []).append(node)
    deepest = max(by_depth, default=0)
    rows = max((len(column) for column in by_depth.values()), default=1)
    placed: dict[str, PlacedNode] = {}
    for depth, column in by_depth.items():
        index = deepest - depth if upward else depth
        for row, node in enumerate(column):
            placed[node.node_id] = PlacedNode(
                node,
                MARGIN + index * COLUMN,
                MARGIN + row * ROW,
                _href(node.node_id),
                _text(node),
            )
    lines = [
        Line(
            start.x + BOX_WIDTH,
            start.y + BOX_HEIGHT // 2,
            end.x,
            end.y + BOX_HEIGHT // 2,
            edge.relationship,
        )
        for edge in walk.edges
        if (start := placed.get(edge.from_node_id)) and (end := placed.get(edge.to_node_id))
    ]
    return Picture(
        width=2 * MARGIN + deepest * COLUMN + BOX_WIDTH,
        height=2 * MARGIN + (rows - 1) * ROW + BOX_HEIGHT,
        nodes=list(placed.values()),
        lines=lines,
    )
