"""Ice next to water: extend the classifier's ice labels across the boundary, one molecular layer at a time.

Why. The SOAP classifier sees a sphere about 8.7 A wide around each oxygen (``SoapSettings.reach``). A molecule
in the first ice layer at an interface, or in the outer shell of a small nucleus, sees a sphere that is half
liquid, matches no reference closely enough and is called liquid, although the denoiser has restored its
crystalline first shell. A first-shell test resolves one layer but cannot tell the phases apart and, on its
own, calls a few percent of a (denoised) supercooled liquid ordered. So the two are combined:

1. the classifier labels every molecule (phase or liquid) as before;
2. a molecule labelled liquid takes the phase of its nearest ice-labelled first-shell neighbour when
   (a) its first shell is *tetrahedrally ordered* and it has such a neighbour, or
   (b) it has four or five neighbours and at least ``min_ordered_ice_bonds`` of its bonds to ice-labelled
       neighbours are ordered, whatever its bonds to the liquid side (CHILL+'s "interfacial ice": a molecule
       of the first layer continues the crystal on two bonds while its other two reach into the liquid, so
       its shell as a whole fails (a));
3. step 2 is repeated ``rounds`` times (each round reaches one more molecular layer);
4. the support check (:func:`supported`): a molecule that the rounds made ice keeps its label only where at
   least half of the molecules within ``support_radius`` are ice-labelled, as at a face; a chain of rounds
   that stepped into the liquid along the few molecules denoising leaves ordered there goes back to liquid;
5. small crystallites: the ice clusters (first-shell bonds) of fewer than ``small_cluster_size`` molecules and
   less than ``small_cluster_share`` of all get ``small_cluster_rounds`` more rounds and a support check of what
   those grew, the larger clusters held as they are. The classifier's ice ends deeper inside a nucleus smaller
   than its reach than inside a flat face. That check asks for the ice share a molecule on the surface of a
   ball of its cluster's size has (``convex_support``), less than a flat face's half. A cluster that reaches
   across the periodic box (a film, a slab) is a face whatever its size (``hold_spanning``).

A disordered liquid cannot grow ice this way unless the classifier already found ice next to it, so a liquid
with no crystal stays liquid whatever the first-shell test says about single molecules; and the phase always
comes from the classifier, never from the first-shell test.

The first-shell test is a bond-order test in the spirit of CHILL+ (Nguyen & Molinero, J. Phys. Chem. B 119,
9369 (2015)): for each oxygen i, q3(i) is the average of the l = 3 spherical harmonics over the directions to
its neighbours within ``shell``; the bond i-j is *staggered* when the normalised correlation
c(i, j) = q3(i).q3(j) / |q3(i)||q3(j)| is at most ``staggered_max`` and *eclipsed* when it lies in
``eclipsed``. A molecule's shell is ordered when it has exactly four neighbours and at least
``min_ordered_bonds`` of its four bonds are staggered or eclipsed: Ih (3 staggered + 1 eclipsed), Ic
(4 staggered), clathrate hydrates (eclipsed) and their interfacial forms all pass. High-pressure ices whose
first shell is not a tetrahedron (VI, VII) do not pass: their boundaries are left as the classifier labels them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .clusters import Clusters, ice_clusters
from .geometry import cloud_pairs, neighbor_edges, perpendicular_widths
from .phases import LIQUID, OTHER_CRYSTAL

#: the code a molecule of a large ice cluster carries through the small crystallites' rounds (step 5): other
#: crystal, which no molecule has yet (the other-crystal step comes after the boundary step) and which
#: :func:`grow_once` and :func:`supported` read as neither liquid (it is not grown) nor ice (nothing grows
#: from it, it supports nothing); its own code comes back after. The LAMMPS compute does the same.
HELD = OTHER_CRYSTAL


@dataclass(frozen=True)
class BoundarySettings:
    """Settings of the boundary step; stored in the model file so that the LAMMPS compute uses the same."""

    #: growth rounds (molecular layers added at most); 0 turns the boundary step off. The classifier's ice
    #: ends 3-5 A inside the crystal (up to ~9 A for sI, whose cages are as wide as the SOAP sphere), and a
    #: round advances about one layer. Without the support check, more than three rounds walk into the liquid
    #: along the molecules that denoising leaves ordered there; with it, a fourth round fills more of the first
    #: layer (sI) and the liquid beyond the face stays liquid (benchmarks/interfaces.py, docs/validation.md)
    rounds: int = 4
    #: first-shell radius (A): the first minimum of the O-O radial distribution of water and ice is at
    #: 3.2-3.5 A in every common model (TIP4P/Ice, TIP4P/2005, SPC/E, mW); CHILL+ uses 3.5 A
    shell: float = 3.5
    #: bond classes of CHILL+
    staggered_max: float = -0.8
    eclipsed_min: float = -0.35
    eclipsed_max: float = 0.25
    #: ordered bonds (staggered or eclipsed) out of four needed for an ordered shell
    min_ordered_bonds: int = 3
    #: ice-labelled first-shell neighbours a molecule needs to join the ice by route (a)
    min_ice_neighbours: int = 1
    #: route (b): ordered bonds to ice-labelled neighbours that let a molecule join whatever its other bonds;
    #: 0 turns the route off. Two is the least that fixes a molecule's orientation on the crystal (one bond
    #: also links liquid to ice); at the seven faces we measured it takes the first 2 A from 75-96% to 82-97%
    #: ice, and the liquid more than 4 A away from 99.65% to 99.47% liquid at worst (docs/validation.md)
    min_ordered_ice_bonds: int = 2
    #: route (b) also needs four or five first-shell neighbours: a tetrahedron, plus at most one molecule of
    #: the liquid pressed into the shell at a face. Dense ices (VI: 12-13, VII: 14 within 3.5 A) never pass:
    #: their near-centrosymmetric shells make q3 vanish, and a vanishing q3 reads as an "eclipsed" bond
    route_b_max_neighbours: int = 5
    #: the support check after the rounds (:func:`supported`): a molecule the rounds labelled ice keeps its
    #: label only if at least ``min_support`` of the molecules within ``support_radius`` (A; itself included)
    #: are ice-labelled; 0 turns it off (model files from before it existed). The radius is the SOAP cutoff
    #: of our models (5 A), the sphere whose liquid part made the classifier miss the molecule; one half is
    #: what a molecule at a flat face has.
    support_radius: float = 5.0
    min_support: float = 0.5
    #: small crystallites (step 5 of the module docstring): after the support check, the ice clusters (first-shell
    #: bonds) of fewer than ``small_cluster_size`` molecules grow ``small_cluster_rounds`` more rounds, checked
    #: for support again; 0 rounds: off. A nucleus smaller than the classifier's reach has its first-look core
    #: farther inside its surface than a flat face has (R = 10 A: 4-13 molecules of ~150), so four rounds leave
    #: its outer shell liquid; a flat face belongs to a cluster of thousands and keeps four rounds, which more
    #: rounds would carry into the liquid beyond it. 400: the cluster of an R = 14 A nucleus after the first
    #: four rounds (378-434 molecules); larger nuclei (R = 16 A, 575-632) already reach 82-89% of themselves.
    #: Four more rounds: mW R = 10 A nuclei 58-60% -> 67-71% labelled ice (two: 62-69%, three: 64-71%), ice
    #: labels outside them 0.11-0.14 per nucleus molecule (docs/validation.md, "Small crystallites")
    small_cluster_rounds: int = 4
    small_cluster_size: int = 400
    #: ... and of less than this share of the analysed molecules: a crystallite in its mother phase, not one
    #: phase of a two-phase box. A slab in a small box (~200 molecules of ice next to as much liquid) is below
    #: 400 molecules but its faces are flat, and the extra rounds would carry its ice into the liquid
    #: (`tests/test_plugin.py`, the in.ice_oxygen example); a nucleus in a seeding box is a few percent of it
    small_cluster_share: float = 0.25
    #: ... and the support check of what those rounds grew asks for the ice share that a molecule on the
    #: surface of a ball of its cluster's size has (:func:`convex_support_scale`), not a flat face's one half:
    #: the support sphere of a molecule on a small nucleus holds less ice because the surface curves away
    #: (R = 10 A: 41%), so the flat-face share stopped the extra rounds a shell short of the nucleus. False:
    #: the flat-face share (model files from before it existed get it on, as shipped)
    convex_support: bool = True
    #: ... and a cluster that reaches across the periodic box along a cell axis (its molecules, projected on
    #: that axis, leave no gap wider than ``shell``: a film, a slab, a rod) is a face whatever its size, held
    #: out of step 5: a film of ice on a substrate in a large box is below both gates but flat. False: size and
    #: share alone (model files from before it existed get it on, as shipped)
    hold_spanning: bool = True

    def __post_init__(self) -> None:
        if not (self.rounds >= 0 and self.support_radius >= 0.0 and 0.0 <= self.min_support <= 1.0
                and self.small_cluster_rounds >= 0 and self.small_cluster_size >= 0
                and 0.0 <= self.small_cluster_share <= 1.0):
            raise ValueError(f"boundary step settings out of range (rounds >= 0, support_radius >= 0 A, "
                             f"0 <= min_support <= 1, small_cluster_rounds >= 0, small_cluster_size >= 0, "
                             f"0 <= small_cluster_share <= 1): {self}")

    def to_dict(self) -> dict:
        """The settings as stored in a model file's metadata and classifier header."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "BoundarySettings":
        """Settings from :meth:`to_dict`; ``None`` or empty (a model from before the boundary step): the defaults.

        A model file written before route (b) existed keeps the behaviour it was validated with (route off)."""
        if not data:
            return cls()
        return cls(**{"min_ordered_ice_bonds": 0, "support_radius": 0.0, **data})


def _real_y3(unit: np.ndarray) -> np.ndarray:
    """The seven real spherical harmonics of degree 3 at unit vectors (E, 3) -> (E, 7).

    Any orthonormal basis of degree 3 gives the same normalised correlations, so the real one serves."""
    x, y, z = unit[:, 0], unit[:, 1], unit[:, 2]
    zz = 5.0 * z * z
    return np.stack(
        [
            0.25 * np.sqrt(35.0 / (2.0 * np.pi)) * y * (3.0 * x * x - y * y),
            0.5 * np.sqrt(105.0 / np.pi) * x * y * z,
            0.25 * np.sqrt(21.0 / (2.0 * np.pi)) * y * (zz - 1.0),
            0.25 * np.sqrt(7.0 / np.pi) * z * (zz - 3.0),
            0.25 * np.sqrt(21.0 / (2.0 * np.pi)) * x * (zz - 1.0),
            0.25 * np.sqrt(105.0 / np.pi) * z * (x * x - y * y),
            0.25 * np.sqrt(35.0 / (2.0 * np.pi)) * x * (x * x - 3.0 * y * y),
        ],
        axis=1,
    )


@dataclass
class Shells:
    """First-shell neighbour pairs of a configuration: directed edges i -> j with their lengths."""

    i: np.ndarray
    j: np.ndarray
    length: np.ndarray
    vector: np.ndarray

    @classmethod
    def build(cls, positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float) -> "Shells":
        """Every pair of ``positions`` (N, 3) closer than ``shell`` (both directions), Angstrom."""
        edges, shift = neighbor_edges(positions, cell, pbc, shell)
        i, j = edges
        vec = positions[j] - positions[i] + shift
        return cls(i, j, np.linalg.norm(vec, axis=1), vec)

    @classmethod
    def around_centres(cls, positions: np.ndarray, n_centres: int, shell: float) -> "Shells":
        """The pairs an open cloud's first ``n_centres`` atoms need for :func:`shell_order`: every pair closer
        than ``shell`` that starts at an atom within two shells of a centre (a centre's q3 needs its
        neighbours, whose q3 needs theirs). The LAMMPS compute's cloud reaches the SOAP reach (~8.7 A) beyond
        its centres, so a full neighbour list would also pay for the pairs of the outer ghosts; the result
        for the centres is the same."""
        from scipy.spatial import cKDTree

        pos = np.ascontiguousarray(positions, dtype=np.float64)
        if n_centres == 0 or len(pos) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, np.zeros(0), np.zeros((0, 3)))
        # distance of every atom to its nearest centre (inf beyond two shells)
        near, _ = cKDTree(pos[:n_centres]).query(pos, k=1, distance_upper_bound=2.0 * shell)
        i, j = cloud_pairs(pos, np.flatnonzero(np.isfinite(near)), shell)
        vec = pos[j] - pos[i]
        return cls(i, j, np.linalg.norm(vec, axis=1), vec)


@dataclass
class ShellOrder:
    """The first-shell test of the centres of a configuration (see the module docstring)."""

    #: (centres,) bool: four neighbours and at least ``min_ordered_bonds`` ordered bonds
    ordered: np.ndarray
    #: (edges,) bool, one per edge of :class:`Shells`: the bond is staggered or eclipsed (edges that leave
    #: a non-centre: False)
    ordered_bond: np.ndarray
    #: (centres,) int: first-shell neighbours of each centre
    neighbours: np.ndarray


def shell_order(shells: Shells, n_atoms: int, settings: BoundarySettings, centres: int | None = None) -> ShellOrder:
    """The first-shell test of the first ``centres`` atoms (default all).

    The q3 of a centre's neighbours needs their own neighbours: with an open cloud (the compute's local
    atoms and ghosts) the cloud must reach two shells beyond the centres, which the SOAP reach does."""
    n_centres = n_atoms if centres is None else centres
    count = np.bincount(shells.i, minlength=n_atoms)
    y = _real_y3(shells.vector / np.maximum(shells.length, 1e-12)[:, None])
    q = np.zeros((n_atoms, 7))
    np.add.at(q, shells.i, y)
    q /= np.maximum(count, 1)[:, None]
    qn = q / np.maximum(np.linalg.norm(q, axis=1), 1e-12)[:, None]
    mine = shells.i < n_centres
    ii, jj = shells.i[mine], shells.j[mine]
    c = np.einsum("ek,ek->e", qn[ii], qn[jj])
    ordered_bond = np.zeros(len(shells.i), dtype=bool)
    ordered_bond[mine] = (c <= settings.staggered_max) | ((c >= settings.eclipsed_min) & (c <= settings.eclipsed_max))
    n_ordered = np.bincount(shells.i, weights=ordered_bond, minlength=n_atoms)[:n_centres]
    neighbours = count[:n_centres]
    return ShellOrder((neighbours == 4) & (n_ordered >= settings.min_ordered_bonds), ordered_bond, neighbours)


def ordered_shells(shells: Shells, n_atoms: int, settings: BoundarySettings, centres: int | None = None) -> np.ndarray:
    """(centres,) bool: which of the first ``centres`` atoms (default all) have a tetrahedrally ordered shell."""
    return shell_order(shells, n_atoms, settings, centres).ordered


def grow_once(
    codes: np.ndarray, order: ShellOrder, shells: Shells, settings: BoundarySettings = BoundarySettings()
) -> np.ndarray:
    """One round: each liquid-labelled centre that passes route (a) or (b) of the module docstring takes the
    phase of its nearest ice-labelled neighbour. ``codes`` covers every atom the shells mention (centres
    first); ``order`` the centres. Returns the new codes of the centres (all centres decide on the previous
    round's codes)."""
    n_centres = len(order.ordered)
    new = codes[:n_centres].copy()
    mine = shells.i < n_centres
    i, j, d = shells.i[mine], shells.j[mine], shells.length[mine]
    to_ice = (codes[i] == LIQUID) & (codes[j] > LIQUID)
    route_a = order.ordered[i]
    if settings.min_ice_neighbours > 1:
        route_a &= np.bincount(i[to_ice], minlength=n_centres)[i] >= settings.min_ice_neighbours
    route_b = np.zeros_like(route_a)
    if settings.min_ordered_ice_bonds > 0:
        ordered_to_ice = np.bincount(i[to_ice], weights=order.ordered_bond[mine][to_ice], minlength=n_centres)
        n = order.neighbours[i]
        route_b = ((ordered_to_ice[i] >= settings.min_ordered_ice_bonds) & (n >= 4)
                   & (n <= settings.route_b_max_neighbours))
    take = to_ice & (route_a | route_b)
    if not np.any(take):
        return new
    i, j, d = i[take], j[take], d[take]
    order_ = np.lexsort((j, d, i))  # per centre, nearest first (ties: lower index)
    i, j = i[order_], j[order_]
    first = np.ones(len(i), dtype=bool)
    first[1:] = i[1:] != i[:-1]
    new[i[first]] = codes[j[first]]
    return new


def supported(before: np.ndarray, after: np.ndarray, i: np.ndarray, j: np.ndarray, settings: BoundarySettings,
              cluster_sizes: np.ndarray | None = None) -> np.ndarray:
    """The support check on the centres ``0 .. len(before) - 1``: their codes ``after`` the rounds, with each
    molecule that the rounds turned from liquid (``before``) to ice set back to liquid where fewer than
    ``settings.min_support`` of the molecules within ``settings.support_radius`` of it, itself included, are
    ice-labelled. ``cluster_sizes`` (step 5's check; one per centre: the size of its ice cluster after the
    rounds): that share scaled for the convex surface of a cluster of that size (:func:`convex_support_scale`).
    ``after`` covers every atom the directed pairs (i, j) (i a centre, j any atom, closer than the radius;
    those of the grown centres are all that is read) mention, centres first. One pass, every centre deciding
    on the same ``after``: the result does not depend on the order of the molecules or how the compute
    spreads them over ranks.

    Why. The rounds follow the first-shell test, which a few percent of the molecules of a (denoised) liquid
    pass; where the ice's own face is ordered, a round can step from it onto such a molecule, and the next round on
    from there: a finger of "ice" reaching 4-6 A into the liquid. A molecule at a face has about half of its
    surroundings in the ice (the half-space behind the face, and the rest of its own layer); one on a finger
    has its ice neighbours on one side only, the chain it came along. The radius is the classifier's own
    (the SOAP cutoff, 5 A: the sphere whose liquid half made the classifier miss the molecule), and one pass,
    not repeated: repeated, the check would eat a small nucleus from its convex surface inwards
    (docs/validation.md)."""
    before = np.asarray(before, dtype=np.int32)
    n = len(before)
    out = np.asarray(after[:n], dtype=np.int32).copy()
    grown = (before == LIQUID) & (out > LIQUID)
    if not grown.any():
        return out
    ice = np.asarray(after, dtype=np.int32) > LIQUID
    neighbours = np.bincount(i, minlength=n)[:n]
    ice_neighbours = np.bincount(i, weights=ice[j], minlength=n)[:n]
    share = np.full(n, settings.min_support)
    if cluster_sizes is not None:
        share *= convex_support_scale(np.asarray(cluster_sizes)[:n], 1.0 + neighbours)
    # itself included: one more molecule, and an ice-labelled one
    out[grown & ((1.0 + ice_neighbours) < share * (1.0 + neighbours))] = LIQUID
    return out


def convex_support_scale(cluster_sizes: np.ndarray, sphere_molecules: np.ndarray) -> np.ndarray:
    """The factor on ``min_support`` for a molecule of an ice cluster of ``cluster_sizes`` molecules whose support
    sphere holds ``sphere_molecules`` (itself included): the ice share of that sphere, centred on the surface
    of a ball of the cluster's size, over a flat face's one half (step 5's support check).

    Why. A sphere of radius r centred on the surface of a ball of radius R >= r has a share
    1/2 - 3 r / (16 R) of its volume inside the ball (the lens of the two spheres); a flat face (R -> inf) has
    one half. Ball and sphere hold molecules at about the same density, so R / r = (N / M)^(1/3) with N the
    cluster's and M the sphere's molecules: no density or water model enters. Below R = r (a cluster no
    larger than one support sphere holds) the lens formula ends, and such a cluster is no crystallite with a
    surface but a few molecules, such as a supercooled liquid's stray first-look ice: it gets no relief (1),
    so that the extra rounds cannot grow it further than a face's check allows. A size of 0 (not in an ice
    cluster) gives 1 too."""
    sizes = np.asarray(cluster_sizes, dtype=np.float64)
    ratio = np.cbrt(sizes / np.maximum(np.asarray(sphere_molecules, dtype=np.float64), 1.0))
    return np.where(ratio >= 1.0, 1.0 - 3.0 / (8.0 * np.maximum(ratio, 1.0)), 1.0)


def extend_ice(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, settings: BoundarySettings
) -> np.ndarray:
    """The boundary step on a whole (periodic) configuration: ``settings.rounds`` rounds of :func:`grow_once`,
    the support check, and the small crystallites' rounds (steps 2-5 of the module docstring).

    Parameters
    ----------
    codes : array_like of int, shape (N,)
        The classifier's phase codes (0: liquid).
    positions : array_like, shape (N, 3)
        The positions that were classified (denoised), Angstrom.
    cell : array_like, shape (3, 3) or None
        Cell vectors as rows, Angstrom; ``None``: no box.
    pbc : tuple of 3 bool
        Periodicity along each cell vector.
    settings : BoundarySettings
        Rounds, first-shell radius (Angstrom) and the CHILL+ bond classes.

    Returns
    -------
    numpy.ndarray of int32, shape (N,)
        The codes with the liquid molecules that pass route (a) or (b) given their ice neighbour's phase; ``codes``
        unchanged when ``settings.rounds`` is 0.
    """
    codes = np.asarray(codes, dtype=np.int32)
    if settings.rounds <= 0 or not np.any(codes == LIQUID) or not np.any(codes > LIQUID):
        return codes  # only a liquid molecule next to ice can change
    shells = Shells.build(np.asarray(positions, dtype=np.float64), cell, pbc, settings.shell)
    order = shell_order(shells, len(codes), settings)
    codes = _rounds_and_support(codes, settings.rounds, positions, cell, pbc, settings, shells, order)
    if settings.small_cluster_rounds <= 0 or not np.any(codes == LIQUID):
        return codes
    clusters = ice_clusters(codes, positions, cell, pbc, settings.shell)
    small = small_clusters(clusters, settings, len(codes))
    if settings.hold_spanning and small.any():
        spans = spanning_clusters(clusters, small, positions, cell, pbc, settings.shell)
        small &= ~spans[np.maximum(clusters.ids, 1) - 1]
    if not small.any():
        return codes
    held = (codes > LIQUID) & ~small
    grown = _rounds_and_support(np.where(held, HELD, codes).astype(np.int32), settings.small_cluster_rounds,
                                positions, cell, pbc, settings, shells, order, convex=settings.convex_support)
    return np.where(held, codes, grown).astype(np.int32)


def small_clusters(clusters: Clusters, settings: BoundarySettings, n_molecules: int) -> np.ndarray:
    """Which molecules belong to a small crystallite (step 5: the ones :func:`extend_ice` gives
    ``small_cluster_rounds`` more rounds): an ice cluster of fewer than :func:`small_cluster_limit` molecules."""
    sizes = clusters.size_of_each()
    return (sizes > 0) & (sizes < small_cluster_limit(settings, n_molecules))


def spanning_clusters(clusters: Clusters, members: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc,
                      gap: float) -> np.ndarray:
    """(K,) bool: which ice clusters reach across the periodic box: along some periodic cell axis, the
    projections of their molecules in ``members`` (bool (N,); the clusters step 5 would grow) leave no gap
    wider than ``gap`` (A, measured across the box's faces), the wrap-around one included. A film or slab
    does along the axes in its plane, a rod along its own; a crystallite smaller than the box does not. Only
    the molecules' fractional coordinates enter, so the result does not depend on the box's origin; no box:
    none reaches across."""
    spans = np.zeros(len(clusters.sizes), dtype=bool)
    periodic = np.flatnonzero(np.asarray(pbc, dtype=bool))
    picked = np.flatnonzero(np.asarray(members, dtype=bool) & (clusters.ids > 0))
    if cell is None or len(periodic) == 0 or len(picked) == 0:
        return spans
    cell = np.asarray(cell, dtype=np.float64)
    frac = np.linalg.solve(cell.T, np.asarray(positions, dtype=np.float64)[picked].T).T % 1.0
    ids = clusters.ids[picked] - 1
    widths = perpendicular_widths(cell)
    for axis in periodic:
        order = np.lexsort((frac[:, axis], ids))
        f, k = frac[order, axis], ids[order]
        first = np.ones(len(k), dtype=bool)
        first[1:] = k[1:] != k[:-1]
        last = np.roll(first, -1)
        # gaps between neighbours along the axis within a cluster, then the one across the box's faces
        inner = np.zeros(len(k))
        inner[1:] = np.where(first[1:], 0.0, f[1:] - f[:-1])
        widest = np.zeros(len(spans))
        np.maximum.at(widest, k, inner)
        np.maximum.at(widest, k[last], 1.0 - f[last] + f[first])
        present = np.zeros(len(spans), dtype=bool)
        present[k] = True
        spans |= present & (widest * widths[axis] <= gap)
    return spans


def small_cluster_limit(settings: BoundarySettings, n_molecules: int) -> float:
    """The size (molecules) from which an ice cluster among ``n_molecules`` analysed ones is held out of step 5:
    ``small_cluster_size``, or ``small_cluster_share`` of them where that is less."""
    return min(float(settings.small_cluster_size), settings.small_cluster_share * n_molecules)


def _rounds_and_support(codes: np.ndarray, rounds: int, positions: np.ndarray, cell: np.ndarray | None, pbc,
                        settings: BoundarySettings, shells: Shells, order: ShellOrder,
                        convex: bool = False) -> np.ndarray:
    """``rounds`` rounds of :func:`grow_once`, then the support check on what they grew (``convex``: with the
    share scaled for the size of each molecule's ice cluster after the rounds)."""
    before = codes
    for _ in range(rounds):
        grown = grow_once(codes, order, shells, settings).astype(np.int32)
        if np.array_equal(grown, codes):  # a round that changed nothing would be repeated exactly
            break
        codes = grown
    if settings.support_radius > 0.0 and not np.array_equal(codes, before):
        edges, _ = neighbor_edges(positions, cell, pbc, settings.support_radius)
        sizes = None
        if convex:
            sizes = ice_clusters(codes, positions, cell, pbc, settings.shell).size_of_each()
        codes = supported(before, codes, edges[0], edges[1], settings, sizes)
    return codes
