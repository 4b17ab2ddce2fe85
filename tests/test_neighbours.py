"""The neighbour searches of a periodic box (geometry.periodic_cloud + cloud_pairs, compiled or k-d tree) find
exactly matscipy's pairs, in every kind of box, and the compiled search rejects bad input with a clear error."""

import numpy as np
import pytest
from matscipy.neighbours import neighbour_list

from conftest import liquid_like
from icephase_lmp import geometry
from icephase_lmp.geometry import cloud_pairs, periodic_cloud, periodic_pairs


def _boxes(rng):
    """(name, positions, cell, pbc, cutoff): orthorhombic with unwrapped atoms and one on a face, tilted,
    periodic in two directions only, and narrower than twice the cutoff (an atom meets several images of
    another, and its own)."""
    pos, cubic = liquid_like(300, 0.9, rng)
    cell = np.diag(np.diag(cubic) * [1.0, 1.1, 0.95])
    stretched = pos * [1.0, 1.1, 0.95]
    stretched[:5] += cell.diagonal() * [1, -1, 2]
    stretched[5, 0] = 0.0
    tilted = cubic.copy()
    tilted[1, 0] = 3.0
    box = cubic[0, 0]
    return [("orthorhombic", stretched, cell, np.ones(3, bool), 8.0),
            ("tilted", pos, tilted, np.ones(3, bool), 6.0),
            ("slab", pos, cubic, np.array([True, True, False]), 6.0),
            ("small", pos[:40] * 0.5, cubic * 0.5, np.ones(3, bool), 0.8 * box)]


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "kd-tree"])
def test_periodic_pairs_are_matscipys(compiled, rng, monkeypatch):
    if compiled and geometry._soap_kernel is None:
        pytest.fail("the compiled search was not built in this install")
    if not compiled:
        monkeypatch.setattr(geometry, "_soap_kernel", None)
    for name, pos, cell, pbc, cutoff in _boxes(rng):
        centres = np.arange(0, len(pos), 3)
        i, j = periodic_pairs(pos, cell, pbc, centres, cutoff)
        ai, aj = neighbour_list("ij", positions=pos, cell=cell, pbc=pbc, cutoff=cutoff)
        mine = np.isin(ai, centres)
        want = sorted(zip(ai[mine].tolist(), aj[mine].tolist()))
        assert len(want) > 0, name
        assert sorted(zip(i.tolist(), j.tolist())) == want, name  # images counted as often as matscipy has them


def test_the_cloud_holds_every_neighbour_vector(rng):
    """The vectors from each atom to the cloud's points within the cutoff are matscipy's periodic vectors."""
    for name, pos, cell, pbc, cutoff in _boxes(rng):
        cloud, owner = periodic_cloud(pos, cell, pbc, cutoff)
        assert np.array_equal(owner[: len(pos)], np.arange(len(pos)))
        centres = np.arange(len(pos))
        i, j = cloud_pairs(cloud, centres, cutoff)
        got = sorted((a, owner[b], *np.round(cloud[b] - cloud[a], 8)) for a, b in zip(i.tolist(), j.tolist()))
        ai, aj, d = neighbour_list("ijD", positions=pos, cell=cell, pbc=pbc, cutoff=cutoff)
        want = sorted((a, b, *np.round(v, 8)) for a, b, v in zip(ai.tolist(), aj.tolist(), d))
        assert got == want, name


def test_the_compiled_search_orders_and_rejects():
    if geometry._soap_kernel is None:
        pytest.fail("the compiled search was not built in this install")
    pairs_within = geometry._soap_kernel.pairs_within
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.5, 0.0], [1e6, 0.0, 0.0], [1e6, 0.5, 0.0]])
    # centres in the order given, neighbours by index; far-apart points do not make the bins explode
    i, j = pairs_within(pos, np.array([4, 0]), 2.0)
    assert list(zip(i.tolist(), j.tolist())) == [(4, 3), (0, 1), (0, 2)]
    bad = pos.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        pairs_within(bad, np.array([0]), 2.0)
    with pytest.raises(ValueError, match="out of range"):
        pairs_within(pos, np.array([5]), 2.0)
    with pytest.raises(ValueError, match="positive"):
        pairs_within(pos, np.array([0]), 0.0)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "kdtree"])
def test_too_close_in_a_wide_orthorhombic_box(compiled, rng, monkeypatch):
    """Both searches (the compiled cell list, and the k-d tree where the package was built without a compiler)
    flag exactly the atoms that a brute-force minimum-image search flags: pairs across a face, across a
    corner, an unwrapped atom, a pair just beyond the distance, and a heap of duplicates."""
    from icephase_lmp.geometry import too_close

    if compiled and geometry._soap_kernel is None:
        pytest.fail("the compiled search was not built in this install")
    if not compiled:
        monkeypatch.setattr(geometry, "_soap_kernel", None)

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
    heap = np.concatenate([pos, np.repeat(pos[30:31], 200, axis=0)])  # 200 copies of atom 30 on its spot
    flagged = too_close(heap, cubic, (True, True, True), 2.0)
    assert flagged[len(pos):].all() and flagged[30] and np.array_equal(flagged[:30], want[:30])


def test_neighbor_edges_compiled_search_is_matscipys(rng, monkeypatch):
    """geometry.neighbor_edges (the denoiser's edges): in a fully periodic box that holds 3 cutoffs along each
    cell vector the compiled search (_soap_kernel.periodic_pairs) gives exactly matscipy's directed pairs and
    edge vectors, for unwrapped atoms, an atom on a face and a tilted cell; narrower or partly periodic boxes go
    to matscipy."""
    real = geometry._soap_kernel
    if real is None:
        pytest.fail("the compiled search was not built in this install")
    calls = []

    class Spy:
        @staticmethod
        def periodic_pairs(*args):
            calls.append(args[2])
            return real.periodic_pairs(*args)

    monkeypatch.setattr(geometry, "_soap_kernel", Spy)
    pos, cubic = liquid_like(400, 0.9, rng)
    tilted = cubic.copy()
    tilted[1, 0], tilted[2, 1] = 3.0, -2.0
    unwrapped = pos.copy()
    unwrapped[:7] += cubic.diagonal() * [1, -1, 2]
    unwrapped[7, 0] = 0.0
    box = cubic[0, 0]
    three = box / 3.0 * (1 - 1e-9)
    cases = [("orthorhombic", unwrapped, cubic, (True, True, True), 4.5),
             ("tilted", pos, tilted, (True, True, True), 4.5),
             ("3 bins exactly", pos, cubic, (True, True, True), three),
             ("narrow", pos, cubic, (True, True, True), box / 2.5),
             ("slab", pos, cubic, (True, True, False), 4.5)]
    for name, p, cell, pbc, cutoff in cases:
        index, shift = geometry.neighbor_edges(p, cell, pbc, cutoff)
        got = sorted((a, b, *np.round(p[b] - p[a] + s, 8)) for a, b, s in zip(*index.tolist(), shift))
        ai, aj, d = neighbour_list("ijD", positions=p, cell=cell, pbc=np.array(pbc), cutoff=cutoff)
        want = sorted((a, b, *np.round(v, 8)) for a, b, v in zip(ai.tolist(), aj.tolist(), d))
        assert len(want) > 0 and got == want, name
    assert calls == [4.5, 4.5, three]  # the narrow box and the slab went to matscipy


def test_the_compiled_periodic_search_rejects_bad_input():
    if geometry._soap_kernel is None:
        pytest.fail("the compiled search was not built in this install")
    periodic_pairs = geometry._soap_kernel.periodic_pairs
    cell = np.diag([20.0, 20.0, 20.0])
    pos = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    index, shift = periodic_pairs(pos, cell, 4.5)
    assert sorted(zip(*index.tolist())) == [(0, 1), (1, 0)] and np.allclose(shift, 0.0)
    bad = pos.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        periodic_pairs(bad, cell, 4.5)
    with pytest.raises(ValueError, match="3 cutoffs"):
        periodic_pairs(pos, cell, 7.0)
    with pytest.raises(ValueError, match="no volume"):
        periodic_pairs(pos, np.zeros((3, 3)), 4.5)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "matscipy"])
def test_neighbor_pairs_hold_each_pair_once(compiled, rng, monkeypatch):
    """geometry.neighbor_pairs (the denoiser's list for forward_pairs): every pair of neighbor_edges once, i < j,
    with its edge vector; None in a box where an atom meets its own image."""
    if compiled and geometry._soap_kernel is None:
        pytest.fail("the compiled search was not built in this install")
    if not compiled:
        monkeypatch.setattr(geometry, "_soap_kernel", None)
    pos, cubic = liquid_like(300, 0.9, rng)
    pos[:5] += cubic.diagonal() * [1, -1, 2]  # unwrapped atoms, as the denoiser's are
    tilted = cubic.copy()
    tilted[1, 0] = 2.0
    # 4 and 5 bins along each cell vector, and 3 (the fewest the compiled search takes: a bin's neighbours
    # at -1 and +1 are then the two other bins, each holding other images)
    assert 3 <= cubic[0, 0] / 6.5 < 4
    for cell, cutoff in ((cubic, 4.5), (tilted, 4.0), (cubic, 6.5)):
        assert geometry._compiled_periodic(cell, np.ones(3, bool), cutoff) == compiled
        edges, shift = geometry.neighbor_edges(pos, cell, np.ones(3, bool), cutoff)
        pairs, pair_shift = geometry.neighbor_pairs(pos, cell, np.ones(3, bool), cutoff)
        assert np.all(pairs[0] < pairs[1]) and 2 * pairs.shape[1] == edges.shape[1] > 0

        def vectors(index, s):
            v = pos[index[1]] - pos[index[0]] + s
            return sorted((a, b, *np.round(x, 8)) for a, b, x in zip(index[0].tolist(), index[1].tolist(), v))

        one_way = edges[0] < edges[1]
        assert vectors(pairs, pair_shift) == vectors(edges[:, one_way], shift[one_way])
    small = cubic * 0.5
    assert geometry.neighbor_pairs(pos[:40] * 0.5, small, np.ones(3, bool), 1.6 * small[0, 0]) is None
