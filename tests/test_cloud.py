"""The LAMMPS compute's open cloud (local atoms first, then ghosts at their image positions) must give the
local atoms exactly what the periodic system gives them, also now that the boundary step and the
other-crystal step search only around the centres (the ghosts of a small box outnumber its atoms)."""

from __future__ import annotations

import numpy as np
from conftest import SHIPPED_MODEL, ice_next_to_disorder

from icephase_lmp import lammps_bridge
from icephase_lmp.boundary import BoundarySettings, Shells, grow_once, shell_order
from icephase_lmp.geometry import cloud_pairs, neighbor_edges
from icephase_lmp.other_crystal import RADIUS, find_other_crystal
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL


def open_cloud(pos: np.ndarray, cell: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """The atoms, then every periodic image within ``reach`` of the box (as LAMMPS's ghosts), and the owner
    of each point of the cloud."""
    inv = np.linalg.inv(cell)
    margin = reach / np.linalg.norm(cell, axis=1)
    points, owners = [pos], [np.arange(len(pos))]
    for a in (-1, 0, 1):
        for b in (-1, 0, 1):
            for c in (-1, 0, 1):
                if (a, b, c) == (0, 0, 0):
                    continue
                image = pos + np.array([a, b, c]) @ cell
                frac = image @ inv
                keep = np.all((frac >= -margin) & (frac <= 1 + margin), axis=1)
                points.append(image[keep])
                owners.append(np.flatnonzero(keep))
    return np.vstack(points), np.concatenate(owners)


def test_cloud_pairs_are_the_neighbour_lists_pairs_of_the_centres():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 20, (400, 3))
    centres = np.arange(0, 400, 3)
    i, j = cloud_pairs(pos, centres, 4.0)
    (ai, aj), _ = neighbor_edges(pos, None, (False,) * 3, 4.0)
    mine = np.isin(ai, centres)
    expected = sorted(zip(ai[mine].tolist(), aj[mine].tolist()))
    assert list(zip(i.tolist(), j.tolist())) == expected and len(expected) > 100


def test_boundary_round_on_the_cloud_equals_the_periodic_one():
    pos, cell = ice_next_to_disorder()
    settings = BoundarySettings()
    # ice labels well inside the crystal half only: a round then has molecules to add at both faces
    x = pos[:, 0] % cell[0, 0]
    codes = np.where((x > 3.0) & (x < 0.5 * cell[0, 0] - 3.0), 1, LIQUID).astype(np.int32)
    shells = Shells.build(pos, cell, (True,) * 3, settings.shell)
    periodic = grow_once(codes, shell_order(shells, len(pos), settings), shells, settings)
    cloud, owner = open_cloud(pos, cell, 9.7)
    for _ in range(2):  # the second call finds the first-shell test of the first one (same positions)
        local = lammps_bridge.grow(str(SHIPPED_MODEL), cloud, len(pos), codes[owner])
        assert np.array_equal(local, periodic)
    assert (periodic != codes).sum() > 10
    # a different cloud is not answered from the previous one
    moved = cloud.copy()
    moved[: len(pos)] += 0.3 * np.random.default_rng(1).standard_normal((len(pos), 3))
    assert lammps_bridge._first_shells(settings, moved, len(pos))[1].ordered.tolist() != \
        lammps_bridge._first_shells(settings, cloud, len(pos))[1].ordered.tolist()


def test_other_crystal_on_the_cloud_equals_the_periodic_one():
    pos, cell = ice_next_to_disorder(width=16.0)
    rng = np.random.default_rng(2)
    # reduced vectors from a few prototypes: some molecules repeat their environment among their neighbours
    prototypes = rng.normal(0.0, 5.0, (6, 30))
    reduced = prototypes[rng.integers(0, 6, len(pos))] + rng.normal(0.0, 0.3, (len(pos), 30))
    codes = np.where(rng.uniform(size=len(pos)) < 0.3, 1, LIQUID).astype(np.int32)
    periodic = find_other_crystal(codes, reduced, pos, cell, (True,) * 3, "euclidean", 2.5)
    cloud, owner = open_cloud(pos, cell, RADIUS + 1.0)
    local = lammps_bridge.other_crystal(str(SHIPPED_MODEL), cloud, len(pos), codes, reduced[owner], "euclidean", 2.5)
    assert np.array_equal(local, periodic)
    assert 0 < (periodic == OTHER_CRYSTAL).sum() < (codes == LIQUID).sum()


def test_settle_on_the_cloud_equals_the_periodic_one():
    """The last pass of the other-crystal step (`settle_shells`: phase labels inside other crystal, then molecules
    enclosed by other crystal and crystal labels alone in liquid) on the compute's cloud, in its two parts with
    the ghosts carrying their owners' codes before each, gives the periodic answer; its rules change molecules
    here."""
    from icephase_lmp.other_crystal import settle_shells

    pos, cell = ice_next_to_disorder(width=16.0)
    rng = np.random.default_rng(4)
    draw = rng.uniform(size=len(pos))
    # mostly other crystal (some liquid molecules enclosed), a sprinkle of ice (some of it alone in liquid)
    codes = np.select([draw < 0.6, draw < 0.65], [OTHER_CRYSTAL, 1], LIQUID).astype(np.int32)
    shell = BoundarySettings().shell
    periodic = settle_shells(codes, pos, cell, (True,) * 3, shell)
    cloud, owner = open_cloud(pos, cell, RADIUS + 1.0)
    joined = lammps_bridge.join_inside(str(SHIPPED_MODEL), cloud, len(pos), codes[owner])
    local = lammps_bridge.settle(str(SHIPPED_MODEL), cloud, len(pos), joined[owner])
    assert np.array_equal(local, periodic)
    assert 0 < ((periodic == OTHER_CRYSTAL) & (codes == LIQUID)).sum() < (codes == LIQUID).sum()
    alone = (codes != LIQUID) & (periodic == LIQUID)
    assert 0 < alone.sum() < (codes != LIQUID).sum()
