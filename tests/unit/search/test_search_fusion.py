"""Reciprocal rank fusion of the semantic and lexical lists (pure logic)."""

from __future__ import annotations

from hartonomous.search.fusion import RRF_K, fuse

A, B, C, D = b"a", b"b", b"c", b"d"


def test_an_atom_found_by_both_signals_beats_one_found_by_one() -> None:
    fused = fuse([A, B, C], [C, D], set(), 4)
    assert [f.atom_id for f in fused] == [C, A, B, D]
    assert fused[0].ranks == {"semantic": 3, "lexical": 1}
    assert fused[0].score == 1 / (RRF_K + 3) + 1 / (RRF_K + 1)
    assert fused[1].ranks == {"semantic": 1}


def test_a_verbatim_match_comes_first_whatever_the_votes() -> None:
    # D is only the lexical list's last, but its whole text is the query.
    fused = fuse([A, B, C], [A, B, D], {D}, 2)
    assert [f.atom_id for f in fused] == [D, A]
    assert fused[0].verbatim
    assert not fused[1].verbatim


def test_one_list_alone_keeps_its_order_and_k_cuts() -> None:
    assert [f.atom_id for f in fuse([], [B, A, C], set(), 2)] == [B, A]
    assert [f.atom_id for f in fuse([C, A], [], set(), 5)] == [C, A]
    assert fuse([], [], set(), 3) == []
