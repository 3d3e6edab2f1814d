"""The lineage picture's links (ui/lineage_picture.py): each box to the page of its kind."""

from __future__ import annotations

from hartonomous.services.lineage import Lineage, LineageNode
from hartonomous.ui.lineage_picture import lay_out


def test_atom_and_model_boxes_link_to_their_own_pages_and_others_to_none() -> None:
    ids = ["atom:aa11", "model:bb22", "inference:acme:0f0f", "tensor:cc33"]
    walk = Lineage(
        start=ids[0],
        direction="down",
        depth=1,
        nodes=[LineageNode(node_id, "X", min(i, 1), {}) for i, node_id in enumerate(ids)],
        edges=[],
        truncated=False,
    )
    links = {placed.node.node_id: placed.href for placed in lay_out(walk, upward=False).nodes}
    assert links == {
        "atom:aa11": "/ui/atoms/aa11",
        "model:bb22": "/ui/models/bb22",
        "inference:acme:0f0f": None,
        "tensor:cc33": None,
    }
