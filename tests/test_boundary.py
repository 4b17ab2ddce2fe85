"""The boundary step (ice labels extended over the first layers next to liquid) and ice clusters."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ice_next_to_disorder, liquid_like

from icephase_lmp.boundary import (BoundarySettings, Shells, ShellOrder, convex_support_scale, extend_ice, grow_once,
                                   ordered_shells, shell_order, spanning_clusters, supported)
from icephase_lmp.clusters import ice_clusters
from icephase_lmp.phases import LIQUID
from icephase_lmp.references import builtin_reference, supercell

SETTINGS = BoundarySettings()


def rounds_only(**settings) -> BoundarySettings:
    """Settings for the tests of the rounds and the support check on their own: step 5 (small crystallites)
    off, since every test system here is one small cluster."""
    return BoundarySettings(small_cluster_rounds=0, **settings)


def crystal(name: str, width: float = 14.0):
    atoms = supercell(builtin_reference(name).atoms, width)
    return atoms.positions.copy(), atoms.cell.array.copy()


@pytest.mark.parametrize("name", ["Ih", "Ic", "sI"])
def test_tetrahedral_crystals_have_ordered_shells(name):
    pos, cell = crystal(name)
    shells = Shells.build(pos, cell, (True,) * 3, SETTINGS.shell)
    assert ordered_shells(shells, len(pos), SETTINGS).all()


@pytest.mark.parametrize("name", ["VI", "VII"])
def test_dense_ices_are_not_tetrahedral(name):
    """Their first shell is not a lone tetrahedron: the boundary step leaves their boundaries alone."""
    pos, cell = crystal(name)
    shells = Shells.build(pos, cell, (True,) * 3, SETTINGS.shell)
    assert not ordered_shells(shells, len(pos), SETTINGS).any()
    # nor by route (b): half of the crystal labelled ice, the other half stays as labelled
    half = np.where(pos[:, 0] % cell[0, 0] < 0.5 * cell[0, 0], 5, LIQUID).astype(np.int32)
    assert np.array_equal(extend_ice(half, pos, cell, (True,) * 3, BoundarySettings(rounds=2)), half)


def test_random_liquid_is_mostly_disordered(rng):
    pos, cell = liquid_like(400, 1.0, rng)
    shells = Shells.build(pos, cell, (True,) * 3, SETTINGS.shell)
    assert ordered_shells(shells, len(pos), SETTINGS).mean() < 0.05


def test_open_cloud_gives_the_periodic_flags_for_its_centres():
    """The compute passes local atoms first, then ghosts at their image positions: the centres' flags
    must equal those of the periodic system when the cloud reaches two shells beyond them."""
    pos, cell = crystal("Ih", 16.0)
    rng = np.random.default_rng(3)
    pos = pos + 0.4 * rng.standard_normal(pos.shape)  # enough to disorder some shells
    periodic = ordered_shells(Shells.build(pos, cell, (True,) * 3, SETTINGS.shell), len(pos), SETTINGS)
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)])
    images = (pos[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    cloud = np.vstack([pos, images])
    flags = ordered_shells(Shells.build(cloud, None, (False,) * 3, SETTINGS.shell), len(cloud), SETTINGS,
                           centres=len(pos))
    assert np.array_equal(flags, periodic) and 0.2 < periodic.mean() < 1.0


def test_grow_once_takes_the_nearest_ice_neighbours_phase():
    # a chain along x, 2.8 A apart; atom 2 (liquid, ordered) sits between Ih (atom 1, 2.8 A) and Ic (atom 3,
    # 2.6 A): it takes Ic. Atom 0 (liquid, not ordered) stays liquid although its neighbour is ice.
    x = np.array([0.0, 2.8, 5.6, 8.2, 20.0])
    pos = np.column_stack([x, np.zeros(5), np.zeros(5)])
    shells = Shells.build(pos, None, (False,) * 3, SETTINGS.shell)
    codes = np.array([LIQUID, 1, LIQUID, 2, LIQUID])
    no_bonds = np.zeros(len(shells.i), dtype=bool)
    neighbours = np.bincount(shells.i, minlength=5)
    order = ShellOrder(np.array([False, True, True, True, True]), no_bonds, neighbours)
    assert grow_once(codes, order, shells).tolist() == [LIQUID, 1, 2, 2, LIQUID]
    # only the centres are decided; the others (ghosts) are read only
    first3 = ShellOrder(order.ordered[:3], no_bonds, neighbours[:3])
    assert grow_once(codes, first3, shells).tolist() == [LIQUID, 1, 2]
    # two ice neighbours required: atom 2 has them (1 and 3), atom 0 does not need checking
    two = BoundarySettings(min_ice_neighbours=2)
    assert grow_once(codes, order, shells, two).tolist() == [LIQUID, 1, 2, 2, LIQUID]
    codes[3] = LIQUID
    assert grow_once(codes, order, shells, two).tolist() == [LIQUID, 1, LIQUID, LIQUID, LIQUID]


def test_grow_once_route_b_needs_enough_ordered_bonds_to_ice():
    """A molecule whose shell fails the test joins when enough of its bonds *to ice* are ordered."""
    # centre 0 with four neighbours on a tetrahedron (2.76 A); 1 and 2 are ice, 3 and 4 liquid
    tetra = 2.76 / np.sqrt(3.0) * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    pos = np.vstack([np.zeros(3), tetra])
    shells = Shells.build(pos, None, (False,) * 3, SETTINGS.shell)
    codes = np.array([LIQUID, 2, 2, LIQUID, LIQUID])
    centre = shells.i == 0
    to = {int(j): k for k, j in zip(np.flatnonzero(centre), shells.j[centre])}
    neighbours = np.bincount(shells.i, minlength=5)[:1]
    not_ordered = np.array([False])

    def order_with(ordered_to: list[int], n_neighbours: int = 4) -> ShellOrder:
        bonds = np.zeros(len(shells.i), dtype=bool)
        bonds[[to[j] for j in ordered_to]] = True
        return ShellOrder(not_ordered, bonds, np.array([n_neighbours]))

    assert neighbours[0] == 4
    assert grow_once(codes, order_with([1, 2]), shells).tolist() == [2]  # two ordered bonds to ice
    assert grow_once(codes, order_with([1, 3, 4]), shells).tolist() == [LIQUID]  # one to ice, two to liquid
    assert grow_once(codes, order_with([1, 2], n_neighbours=3), shells).tolist() == [LIQUID]
    assert grow_once(codes, order_with([1, 2], n_neighbours=5), shells).tolist() == [2]
    assert grow_once(codes, order_with([1, 2], n_neighbours=6), shells).tolist() == [LIQUID]
    assert grow_once(codes, order_with([1, 2]), shells, BoundarySettings(min_ordered_ice_bonds=0)).tolist() == [LIQUID]
    assert grow_once(codes, order_with([1, 2]), shells, BoundarySettings(min_ordered_ice_bonds=3)).tolist() == [LIQUID]


def test_route_b_adds_the_first_layer_of_a_face_whose_other_side_is_disordered(rng):
    """Ice Ic labelled ice below z = 12 A, shaken by up to 0.9 A above 13.5 A: the (001) layer between has two
    bonds into the crystal and two into the disorder, so many of its shells fail the test as a whole; route
    (b) adds them. (Where the shaking leaves fewer than four neighbours within 3.5 A, neither route does.)"""
    pos, cell = crystal("Ic", 22.0)
    z = pos[:, 2] % cell[2, 2]
    pos[z > 13.5] += rng.uniform(-0.9, 0.9, ((z > 13.5).sum(), 3))
    codes = np.where(z < 12.0, 2, LIQUID).astype(np.int32)
    layer = (z > 12.0) & (z < 13.5)
    pbc = (True,) * 3
    without = extend_ice(codes, pos, cell, pbc, BoundarySettings(rounds=1, min_ordered_ice_bonds=0, support_radius=0.0))
    with_b = extend_ice(codes, pos, cell, pbc, BoundarySettings(rounds=1, support_radius=0.0))
    assert layer.sum() > 20
    assert (without[layer] > LIQUID).mean() < 0.6 and (with_b[layer] > LIQUID).mean() > 0.7
    assert (with_b[layer] > LIQUID).sum() >= (without[layer] > LIQUID).sum() + 5
    assert np.all(with_b[with_b != codes] == 2)


def test_model_files_from_before_route_b_keep_it_off():
    old = {k: v for k, v in BoundarySettings().to_dict().items() if k != "min_ordered_ice_bonds"}
    assert BoundarySettings.from_dict(old).min_ordered_ice_bonds == 0
    assert BoundarySettings.from_dict(BoundarySettings().to_dict()) == BoundarySettings()
    assert BoundarySettings().min_ordered_ice_bonds == 2


def test_supported_keeps_grown_ice_only_where_enough_around_it_is_ice():
    """Centres 0-3, other atoms 4-9. Centre 0 was made ice by the rounds and has 1 ice neighbour of 4: with itself
    2 of 5 (40%) < 50%: liquid again. Centre 1, grown, 1 ice neighbour of 3: 2 of 4, kept. Centre 2 is the
    classifier's ice with no ice around it: never touched. Centre 3 is liquid: stays liquid."""
    before = np.array([LIQUID, LIQUID, 1, LIQUID], dtype=np.int32)
    after = np.array([1, 1, 1, LIQUID, 1, LIQUID, LIQUID, LIQUID, 1, LIQUID], dtype=np.int32)
    i = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    j = np.array([4, 5, 6, 7, 8, 6, 7, 5, 9, 4])
    settings = BoundarySettings(support_radius=5.0)
    assert supported(before, after, i, j, settings).tolist() == [LIQUID, 1, 1, LIQUID]
    # every centre decides on the same codes: the order of the pairs does not matter
    shuffled = np.random.default_rng(0).permutation(len(i))
    assert supported(before, after, i[shuffled], j[shuffled], settings).tolist() == [LIQUID, 1, 1, LIQUID]
    assert supported(before, after, i, j, BoundarySettings(support_radius=5.0, min_support=0.4)).tolist() == [1, 1, 1, LIQUID]
    assert supported(before, after, i, j, BoundarySettings(support_radius=5.0, min_support=0.6)).tolist() == [LIQUID] * 2 + [1, LIQUID]


def test_support_check_trims_ice_grown_into_disorder_not_the_crystal():
    """Ice Ih next to random oxygens (conftest.ice_next_to_disorder), the classifier's ice standing in as the
    crystal more than 4 A from its faces: four rounds reach into the disorder; the support check takes back
    labels there and none in the crystal, and extend_ice equals the rounds followed by :func:`supported`."""
    from icephase_lmp.geometry import neighbor_edges

    pos, cell = ice_next_to_disorder()
    pbc = (True,) * 3
    half = 0.5 * cell[0, 0]
    x = pos[:, 0] % cell[0, 0]
    crystal_side = x < half
    depth = np.minimum(x, half - x)
    codes = np.where(crystal_side & (depth > 4.0), 1, LIQUID).astype(np.int32)
    rounds = extend_ice(codes, pos, cell, pbc, rounds_only(rounds=4, support_radius=0.0))
    checked = extend_ice(codes, pos, cell, pbc, rounds_only(rounds=4, support_radius=5.0))
    taken_back = (rounds > LIQUID) & (checked == LIQUID)
    assert taken_back[~crystal_side].sum() >= 5 and not taken_back[crystal_side].any()
    assert (rounds[crystal_side] > LIQUID).sum() > 2 * (codes > LIQUID).sum()  # the rounds did fill the crystal
    edges, _ = neighbor_edges(pos, cell, pbc, 5.0)
    assert np.array_equal(checked, supported(codes, rounds, edges[0], edges[1], BoundarySettings(support_radius=5.0)))
    # off (radius 0), the rounds alone
    assert np.array_equal(extend_ice(codes, pos, cell, pbc, rounds_only(rounds=4, support_radius=0.0)), rounds)


def test_model_files_from_before_the_support_check_keep_it_off():
    old = {k: v for k, v in BoundarySettings(support_radius=5.0).to_dict().items() if k != "support_radius"}
    assert BoundarySettings.from_dict(old).support_radius == 0.0
    assert (BoundarySettings().rounds, BoundarySettings().support_radius) == (4, 5.0)  # what a new export gets
    with pytest.raises(ValueError, match="out of range"):
        BoundarySettings(min_support=1.5)
    with pytest.raises(ValueError, match="out of range"):
        BoundarySettings(support_radius=-1.0)


def test_extend_ice_grows_a_layer_per_round_and_stops_at_disorder(rng):
    """Ice Ih labelled only where x < 6 A: each round adds the next ordered layer; a shuffled (disordered)
    region beyond x = 14 A is not entered: at most a few of its molecules next to the crystal (across the
    periodic boundary at x = 23.5 A) join, none of its middle."""
    pos, cell = crystal("Ih", 22.0)
    x = pos[:, 0] % cell[0, 0]
    disordered = x > 14.0
    pos[disordered] += rng.uniform(-1.0, 1.0, (disordered.sum(), 3))
    codes = np.where(x < 6.0, 1, LIQUID)
    grown = [codes]
    for rounds in (1, 2, 3):
        grown.append(extend_ice(codes, pos, cell, (True,) * 3, rounds_only(rounds=rounds, support_radius=0.0)))
    sizes = [np.count_nonzero(g) for g in grown]
    assert sizes[0] < sizes[1] < sizes[2] < sizes[3]
    assert set(np.unique(grown[3])) <= {LIQUID, 1}
    assert (grown[3][disordered] > LIQUID).mean() < 0.1
    assert not np.any(grown[3][(x > 14.0 + SETTINGS.shell) & (x < cell[0, 0] - SETTINGS.shell)])
    assert np.array_equal(extend_ice(codes, pos, cell, (True,) * 3, BoundarySettings(rounds=0)), codes)


def test_extend_ice_stopping_early_gives_every_rounds_result(rng):
    """extend_ice stops when a round changes nothing: with more rounds than the growth needs, the result is
    still that of applying grow_once round after round (and an all-ice input is returned as it is)."""
    pos, cell = crystal("Ih", 22.0)
    x = pos[:, 0] % cell[0, 0]
    disordered = x > 14.0
    pos[disordered] += rng.uniform(-1.0, 1.0, (disordered.sum(), 3))
    codes = np.where(x < 6.0, 1, LIQUID).astype(np.int32)
    shells = Shells.build(pos, cell, (True,) * 3, SETTINGS.shell)
    order = shell_order(shells, len(codes), SETTINGS)
    by_hand = [codes]
    while len(by_hand) < 40:
        by_hand.append(grow_once(by_hand[-1], order, shells, SETTINGS).astype(np.int32))
        if np.array_equal(by_hand[-1], by_hand[-2]):
            break
    last = len(by_hand) - 2  # rounds after which nothing changes any more
    assert 3 < last < 38, "the growth should go on for a few rounds, then stop"
    for rounds in (1, 3, last, last + 5):
        assert np.array_equal(extend_ice(codes, pos, cell, (True,) * 3, rounds_only(rounds=rounds, support_radius=0.0)),
                              by_hand[min(rounds, last)])
    all_ice = np.ones(len(codes), dtype=np.int32)
    assert np.array_equal(extend_ice(all_ice, pos, cell, (True,) * 3, BoundarySettings(rounds=3)), all_ice)



def slab_and_ball(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An ideal Ih crystal 36 A wide, and which of its molecules form a slab (x < 5 A, periodic in y and z) and a
    ball of ``radius`` about 15 A from it (step 5's tests)."""
    pos, cell = crystal("Ih", 36.0)
    x = pos[:, 0] % cell[0, 0]
    centre = pos[np.argmin(np.linalg.norm(pos - np.array([20.5, 0.5 * cell[1, 1], 0.5 * cell[2, 2]]), axis=1))]
    d = pos - centre
    d -= np.round(d @ np.linalg.inv(cell)) @ cell
    return pos, cell, x < 5.0, np.linalg.norm(d, axis=1) < radius


def test_small_crystallites_get_more_rounds_large_clusters_do_not():
    """Step 5 on an ideal Ih crystal (every shell ordered, so each round adds a layer), labelled phase 1 in a
    slab (x < 5 A, periodic in y and z: one large cluster) and phase 2 in a small ball 15 A away; one round,
    then one more for clusters of fewer than ``small_cluster_size`` molecules. The ball grows as two rounds
    grow it alone, the slab as one round alone, each keeping its phase; with no cluster small enough, one
    round is all."""
    pos, cell, slab, ball = slab_and_ball(3.0)
    pbc = (True,) * 3
    codes = np.where(slab, 1, np.where(ball, 2, LIQUID)).astype(np.int32)
    one, two = rounds_only(rounds=1, support_radius=0.0), rounds_only(rounds=2, support_radius=0.0)
    slab_one = extend_ice(np.where(slab, 1, LIQUID), pos, cell, pbc, one)
    ball_one = extend_ice(np.where(ball, 2, LIQUID), pos, cell, pbc, one)
    ball_two = extend_ice(np.where(ball, 2, LIQUID), pos, cell, pbc, two)
    assert (ball_one > LIQUID).sum() < (ball_two > LIQUID).sum() < (slab_one > LIQUID).sum()
    # the size and share gates alone (the slab also reaches across the box: test_films_and_slabs_are_faces)
    step5 = BoundarySettings(rounds=1, support_radius=0.0, small_cluster_rounds=1, small_cluster_share=1.0,
                             small_cluster_size=int((slab_one > LIQUID).sum()), hold_spanning=False)
    assert np.array_equal(extend_ice(codes, pos, cell, pbc, step5), np.where(slab_one > LIQUID, slab_one, ball_two))
    # held by size, or by share: the slab alone is small where it is less than the share of all molecules
    by_share = BoundarySettings(rounds=1, support_radius=0.0, small_cluster_rounds=1, small_cluster_size=10**6,
                                small_cluster_share=((slab_one > LIQUID).sum() - 0.5) / len(pos), hold_spanning=False)
    assert np.array_equal(extend_ice(codes, pos, cell, pbc, by_share), np.where(slab_one > LIQUID, slab_one, ball_two))
    for held in (dict(small_cluster_size=1), dict(small_cluster_share=0.0)):
        nothing_small = BoundarySettings(rounds=1, support_radius=0.0, small_cluster_rounds=1, hold_spanning=False,
                                         **held)
        assert np.array_equal(extend_ice(codes, pos, cell, pbc, nothing_small), extend_ice(codes, pos, cell, pbc, one))


@pytest.mark.parametrize("radius", [10.0, 15.0, 30.0])
def test_convex_support_scale_is_the_ice_share_at_the_surface_of_a_ball(radius):
    """Points on a fine cubic grid, a ball of ``radius`` of them "ice": at a point on the ball's surface, the ice
    share of the 5 A sphere around it is half the scale that the cluster and sphere counts give (a flat face:
    one half), within the grid's discreteness."""
    r, step = 5.0, 0.4
    axis = np.arange(-radius - 2 * r, radius + 2 * r + step / 2, step)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    ball = np.linalg.norm(grid, axis=1) <= radius
    surface = grid[ball][np.argmax(grid[ball][:, 0])]  # on the ball's surface, along +x
    sphere = np.linalg.norm(grid - surface, axis=1) <= r
    share = (sphere & ball).sum() / sphere.sum()
    assert share < 0.5 - 0.05 * (10.0 / radius)  # curved: clearly below a flat face's half
    assert share == pytest.approx(0.5 * convex_support_scale(ball.sum(), sphere.sum()), abs=0.015)


def test_convex_support_scale_limits():
    """Outside any cluster, and a cluster smaller than the sphere holds (a few stray molecules): 1, a flat
    face's check; a cluster as large as the sphere holds: the share of a ball of the sphere's radius (5/16 of
    1/2); a very large one: a flat face."""
    scale = convex_support_scale(np.array([0, 5, 16, 17, 10**9]), np.full(5, 17))
    assert scale[0] == scale[1] == scale[2] == 1.0
    assert scale[3] == pytest.approx(0.625) and scale[4] == pytest.approx(1.0, abs=1e-2)


def test_supported_asks_less_on_the_surface_of_a_small_cluster():
    """The hand-made centres of the test above: centre 0 (2 of 5 ice, 40%) goes back to liquid at a flat face's
    50%, but stays ice where its cluster is as large as its sphere holds (5 molecules: 50% x 0.625 = 31%); a
    cluster of a million molecules is a flat face again, and so are a smaller one (3) and a size of 0."""
    before = np.array([LIQUID, LIQUID, 1, LIQUID], dtype=np.int32)
    after = np.array([1, 1, 1, LIQUID, 1, LIQUID, LIQUID, LIQUID, 1, LIQUID], dtype=np.int32)
    i = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    j = np.array([4, 5, 6, 7, 8, 6, 7, 5, 9, 4])
    settings = BoundarySettings(support_radius=5.0)
    assert supported(before, after, i, j, settings, np.array([5, 5, 5, 0])).tolist() == [1, 1, 1, LIQUID]
    for sizes in ([10**6] * 4, [3] * 4, [0] * 4):
        assert supported(before, after, i, j, settings, np.array(sizes)).tolist() == [LIQUID, 1, 1, LIQUID]


def test_spanning_clusters_are_films_slabs_and_rods():
    """On an ideal Ih crystal: a slab (x < 5 A) and a rod along z reach across the box, a ball does not,
    wherever the box's origin lies; only the members given count; without a box nothing does."""
    pos, cell, slab, ball = slab_and_ball(6.0)
    pbc = (True,) * 3
    y = pos[:, 1] % cell[1, 1]
    rod = ((pos[:, 0] % cell[0, 0]) > 20.0) & ((pos[:, 0] % cell[0, 0]) < 27.0) & (y > 5.0) & (y < 12.0)
    assert not np.any(rod & (slab | ball))
    codes = np.where(slab, 1, np.where(ball, 2, np.where(rod, 3, LIQUID))).astype(np.int32)
    for origin in (np.zeros(3), np.array([3.3, -7.1, 11.7])):
        clusters = ice_clusters(codes, pos + origin, cell, pbc, 3.5)
        assert len(clusters.sizes) == 3
        spans = spanning_clusters(clusters, codes > LIQUID, pos + origin, cell, pbc, 3.5)
        of = {name: spans[clusters.ids[np.flatnonzero(part)[0]] - 1] for name, part in
              (("slab", slab), ("ball", ball), ("rod", rod))}
        assert of == {"slab": True, "ball": False, "rod": True}
    # the same crystal in a sheared cell (b + a, c + b: the same lattice, triclinic): the same answer
    sheared = np.array([cell[0], cell[1] + cell[0], cell[2] + cell[1]])
    clusters = ice_clusters(codes, pos, sheared, pbc, 3.5)
    spans = spanning_clusters(clusters, codes > LIQUID, pos, sheared, pbc, 3.5)
    assert [spans[clusters.ids[np.flatnonzero(part)[0]] - 1] for part in (slab, ball, rod)] == [True, False, True]
    # the rod reaches across along z only: not periodic there, it does not
    clusters = ice_clusters(codes, pos, cell, (True, True, False), 3.5)
    assert not spanning_clusters(clusters, rod, pos, cell, (True, True, False), 3.5).any()
    assert not spanning_clusters(clusters, codes > LIQUID, pos, None, (False,) * 3, 3.5).any()


def test_films_and_slabs_are_faces_whatever_their_size():
    """Step 5 on the ideal crystal with both gates open (size 10^6, share 1): the slab (160 molecules) reaches
    across the box and is held, as one round alone grows it, while the ball gets its extra round; without
    the spanning gate the slab grows a round more too."""
    pos, cell, slab, ball = slab_and_ball(3.0)
    pbc = (True,) * 3
    codes = np.where(slab, 1, np.where(ball, 2, LIQUID)).astype(np.int32)
    open_gates = dict(rounds=1, support_radius=0.0, small_cluster_rounds=1, small_cluster_size=10**6,
                      small_cluster_share=1.0)
    one, two = rounds_only(rounds=1, support_radius=0.0), rounds_only(rounds=2, support_radius=0.0)
    slab_one = extend_ice(np.where(slab, 1, LIQUID), pos, cell, pbc, one)
    slab_two = extend_ice(np.where(slab, 1, LIQUID), pos, cell, pbc, two)
    ball_two = extend_ice(np.where(ball, 2, LIQUID), pos, cell, pbc, two)
    assert (slab_two > LIQUID).sum() > (slab_one > LIQUID).sum()
    held = extend_ice(codes, pos, cell, pbc, BoundarySettings(**open_gates))
    assert np.array_equal(held, np.where(slab_one > LIQUID, slab_one, ball_two))
    grown = extend_ice(codes, pos, cell, pbc, BoundarySettings(**open_gates, hold_spanning=False))
    assert np.array_equal(grown, np.where(slab_two > LIQUID, slab_two, ball_two))


def test_small_crystallites_support_check_is_for_a_convex_surface():
    """Step 5 on an ideal Ih crystal (every shell ordered): a ball of ice (R = 6 A) grows one more round, and the
    support check cuts back much of that layer, whose sphere is less than half ice on a curved surface; asked
    for a convex surface's share, more of it stays ice. A slab (a large cluster, held) is the same either way."""
    pos, cell, slab, ball = slab_and_ball(6.0)
    pbc = (True,) * 3
    codes = np.where(slab, 1, np.where(ball, 2, LIQUID)).astype(np.int32)
    convex = BoundarySettings(rounds=1, support_radius=5.0, small_cluster_rounds=1, small_cluster_share=1.0,
                              small_cluster_size=int(slab.sum()))
    flat = BoundarySettings(**{**convex.to_dict(), "convex_support": False})
    with_convex, with_flat = extend_ice(codes, pos, cell, pbc, convex), extend_ice(codes, pos, cell, pbc, flat)
    assert np.array_equal(with_convex == 1, with_flat == 1)
    ball_convex, ball_flat = (with_convex == 2).sum(), (with_flat == 2).sum()
    assert ball_convex >= ball_flat + 10, (ball_convex, ball_flat)
    # the flat check keeps a subset of what the convex one keeps
    assert not np.any((with_flat == 2) & (with_convex != 2))


def test_liquid_without_ice_stays_liquid(rng):
    pos, cell = liquid_like(300, 1.0, rng)
    codes = np.zeros(len(pos), dtype=np.int32)
    assert not extend_ice(codes, pos, cell, (True,) * 3, BoundarySettings(rounds=10)).any()


def test_clusters_are_numbered_by_size():
    # two ice groups along a line (3 and 2 molecules, 2.8 A apart), separated by liquid; periodic box 40 A
    x = np.array([0.0, 2.8, 5.6, 15.0, 17.8, 25.0])
    pos = np.column_stack([x, np.full(6, 5.0), np.full(6, 5.0)])
    codes = np.array([1, 1, 2, 3, 3, LIQUID])
    c = ice_clusters(codes, pos, np.eye(3) * 40.0, (True,) * 3, 3.5)
    assert c.ids.tolist() == [1, 1, 1, 2, 2, 0] and c.sizes.tolist() == [3, 2] and c.largest == 3
    # across the periodic boundary the two groups join: 37.2 + 2.8 = 40
    pos[3:5, 0] = [34.4, 37.2]
    assert ice_clusters(codes, pos, np.eye(3) * 40.0, (True,) * 3, 3.5).largest == 5
    assert ice_clusters(np.zeros(6), pos, np.eye(3) * 40.0, (True,) * 3, 3.5).largest == 0


def test_boundary_settings_travel_in_the_classifier_file(classifier):
    from dataclasses import replace

    from icephase_lmp.classifier import Classifier

    changed = replace(classifier, boundary=BoundarySettings(rounds=1, shell=3.3))
    assert Classifier.from_bytes(changed.to_bytes()).boundary == BoundarySettings(rounds=1, shell=3.3)


def test_pipeline_applies_the_boundary_step(shipped_model):
    from icephase_lmp.pipeline import Pipeline

    pos, cell = ice_next_to_disorder()
    pbc = (True, True, True)
    # (the other-crystal step off: it would label some of the crystal's boundary molecules that the classifier
    # alone leaves liquid; it has its own tests in test_other_crystal.py)
    full = Pipeline(shipped_model, other_crystal=False).run(pos, cell, pbc)
    alone = Pipeline(shipped_model, boundary_rounds=0, other_crystal=False).run(pos, cell, pbc)
    assert Pipeline(shipped_model).boundary.rounds == shipped_model.classifier.boundary.rounds > 0
    assert np.array_equal(full.distances, alone.distances)
    added = (full.codes != alone.codes)
    # the step only turns liquid into the phase of the crystal, never the other way round
    assert added.any() and np.all(alone.codes[added] == LIQUID) and np.all(full.codes[added] == 1)
    # it equals extend_ice on the denoised positions with the model's settings
    expected = extend_ice(alone.codes, full.positions, cell, pbc, shipped_model.classifier.boundary)
    assert np.array_equal(full.codes, expected)
    # the ice is one cluster (periodic along y and z), found on the input positions
    assert full.clusters.largest == ice_clusters(full.codes, pos, cell, pbc, 3.5).largest
    assert full.clusters.largest >= np.count_nonzero(full.codes > LIQUID) * 0.9
    # off without denoising: the ordered-shell test was measured on denoised positions
    assert Pipeline(shipped_model, use_denoiser=False).boundary.rounds == 0
    with pytest.raises(ValueError, match="boundary rounds must be >= 0"):
        Pipeline(shipped_model, boundary_rounds=-1)


def test_cli_boundary_option(tmp_path, capsys):
    from ase import Atoms
    from ase.io import write

    from icephase_lmp.cli import main

    pos, cell = ice_next_to_disorder()
    path = tmp_path / "slab.extxyz"
    write(path, Atoms("O" * len(pos), positions=pos, cell=cell, pbc=True))
    counts = {}
    for rounds in ("0", "3"):
        assert main(["classify", str(path), "--boundary", rounds, "--out", str(tmp_path / f"b{rounds}.csv")]) == 0
        lines = capsys.readouterr().out.splitlines()
        header = next(line.split() for line in lines if line.startswith("frame"))
        counts[rounds] = dict(zip(header, next(line.split() for line in lines if line.startswith("    0"))))
    assert int(counts["3"]["Ih"]) > int(counts["0"]["Ih"])
    assert int(counts["3"]["Ih"]) + int(counts["3"]["liquid"]) == len(pos)
    assert main(["classify", str(path), "--boundary", "-1", "--out", str(tmp_path / "x.csv")]) == 2
    assert "boundary rounds must be >= 0" in capsys.readouterr().err

