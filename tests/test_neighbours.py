"""The periodic k-d tree search (geometry._orthorhombic_pairs) finds exactly matscipy's pairs and vectors."""

import numpy as np
import pytest
from matscipy.neighbours import neighbour_list

from conftest import liquid_like
from icephase_lmp.geometry import _orthorhombic_pairs, neighbor_pairs, neighbor_vectors


def _as_set(i, j, vectors):
    return {(int(a), int(b), *np.round(v, 9)) for a, b, v in zip(i, j, vectors)}


@pytest.mark.parametrize("cutoff", [3.5, 8.7])
def test_tree_pairs_are_matscipys(cutoff, rng):
    """A liquid-like orthorhombic box, with atoms outside the cell and one exactly on a face: the same
    directed pairs with the same vectors, whichever search finds them."""
    pos, cubic = liquid_like(400, 0.9, rng)
    cell = np.diag(np.diag(cubic) * [1.0, 1.1, 0.95])
    pos = pos * [1.0, 1.1, 0.95]
    pos[:5] += cell.diagonal() * [1, -1, 2]  # unwrapped atoms
    pos[5, 0] = 0.0
    pbc = np.ones(3, dtype=bool)
    found = _orthorhombic_pairs(pos, cell, pbc, cutoff)
    assert found is not None
    i, j, d = neighbour_list("ijD", positions=pos, cell=cell, pbc=pbc, cutoff=cutoff)
    assert len(found[0]) == len(i) > 0
    assert _as_set(*found) == _as_set(i, j, d)
    first, vectors = neighbor_vectors(pos, cell, pbc, cutoff)
    assert _as_set(first, found[1], vectors) == _as_set(i, j, d)
    assert set(zip(*neighbor_pairs(pos, cell, pbc, cutoff))) == set(zip(i.tolist(), j.tolist()))


def test_other_boxes_go_to_matscipy(rng):
    """Tilted, partly periodic, or narrower than twice the cutoff (an atom then meets several images of
    another): the tree does not apply, and the results are still matscipy's."""
    pos, cubic = liquid_like(200, 0.9, rng)
    tilted = cubic.copy()
    tilted[1, 0] = 3.0
    box = cubic.diagonal()[0]
    cases = [(tilted, np.ones(3, bool), 6.0), (cubic, np.array([True, True, False]), 6.0),
             (cubic, np.ones(3, bool), 0.6 * box)]
    for cell, pbc, cutoff in cases:
        assert _orthorhombic_pairs(pos, cell, pbc, cutoff) is None
        i, j = neighbour_list("ij", positions=pos, cell=cell, pbc=pbc, cutoff=cutoff)
        got = neighbor_pairs(pos, cell, pbc, cutoff)
        assert sorted(zip(*got)) == sorted(zip(i.tolist(), j.tolist()))


def test_too_close_in_a_wide_orthorhombic_box(rng):
    """The periodic tree flags exactly the atoms that a brute-force minimum-image search flags: pairs across
    a face, across a corner, an unwrapped atom, and a pair just beyond the distance."""
    from icephase_lmp.geometry import too_close

    pos, cubic = liquid_like(300, 0.9, rng, min_dist=2.6)
    box = cubic[0, 0]
    pos[0] = [0.1, 5.0, 5.0]
    pos[1] = [box - 0.5, 5.0, 5.0]  # 0.6 A from atom 0 across the face
    pos[2] = [0.2, 0.2, 0.2]
    pos[3] = [box - 0.3, box - 0.3, box - 0.3]  # across the corner
    pos[4] = pos[10] + [2.0 + 1e-6, 0.0, 0.0]  # just beyond the distance
    pos[5] = pos[20] + [1.5 + box, 0.0, 0.0]  # unwrapped, 1.5 A from atom 20
    d = pos[:, None, :] - pos[None, :, :]
    d -= box * np.round(d / box)
    dist = np.linalg.norm(d, axis=2) + np.diag(np.full(len(pos), np.inf))
    want = dist.min(axis=1) < 2.0
    assert want[[0, 1, 2, 3, 5, 20]].all() and not want[10]  # 10: its nearest is atom 4, just beyond
    assert np.array_equal(too_close(pos, cubic, (True, True, True), 2.0), want)
