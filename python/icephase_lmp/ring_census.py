"""The ring census: a crystal of a hydrogen-bonded phase holds that phase's rings.

Why. The site census (site_census.py) compares a cluster's SOAP sites with its phase's, but two clathrates can
share sites *and* their proportions: the empty TS-I and HS-I hydrates, which no shipped model has, are built
of the same pentagon/hexagon vertices as sI in nearly sI's shares (site distance 0.003-0.14, below the site
census's 0.25), and the classifier and boundary step call them "sI". What tells them apart is how those
vertices join up: TS-I and HS-I hold 5^12 6^3 cages, which sI has not. SOAP (5 A) sees a molecule's first
shells; a ring of six reaches 5.5 A across, and whose rings a molecule's neighbours sit on, farther still.

The signature. On the hydrogen-bond network (oxygens closer than :data:`BOND`), each pair of a molecule's four
bonds closes a smallest ring (up to :data:`RING_MAX` members; none beyond). Its *ring code* is the sizes on
the three pairs of opposite bond angles, in a canonical order (which pairs share a bond is kept: in sI two
hexagons meet a molecule on opposite angles, never on adjacent ones). Its *signature* is its ring code and
its four neighbours' ring codes, sorted: a topological fingerprint of the first two shells, unchanged by
thermal motion once the denoiser has removed it. Every molecule of an ideal sI cell carries one of three
signatures; 23% of TS-I's and 40% of HS-I's carry one sI has not, 88% of sH's one sII has not.

The test. A phase is counted where its ideal network is one (:func:`is_network`: every molecule has four
bonds and no fifth oxygen within :data:`CLEAR_GAP` of the bond length: Ih, Ic, sI, sII, sH of the shipped
phases) and the site census counts it (more than one site: sI, sII, sH; Ih and Ic hold one ring environment,
all hexagons, and are left out, which keeps the census off in the commonest boxes). Its signatures come from
its ideal reference cell (:func:`fit_ring_table`, stored in the model file beside the site table). After the
boundary step, for each ice cluster and counted phase, the molecules carrying the phase's label whose
signature sees crystal-labelled molecules only (the molecule, its neighbours and every molecule on their
smallest rings: near the ice's edge rings pass through liquid) are counted; where at least
:data:`site_census.MIN_NAMED` are and more than :data:`MAX_FOREIGN` of them carry a signature the phase has
not, the cluster's molecules of that phase become other crystal.

Measured (docs/validation.md, "The ring census"): after denoising, our TIP4P/Ice MD of sI at 250 and 268 K,
sII and sH has no foreign signature; the mW sI/liquid slab at 240 K 0.002-0.040 per frame (0.16-0.20 if
every molecule with crystal-labelled neighbours counted); TS-I (named sI) 0.233, HS-I 0.400 (the ideal cells'
shares to the digit); sH named sII (the twelve-phase model without sH) 0.92-0.94.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ClassifierError
from .geometry import neighbor_edges
from .phases import LIQUID, OTHER_CRYSTAL
from .site_census import MIN_NAMED, count_rows, other_crystal_groups

try:
    from . import _soap_kernel  # its compiled smallest rings, where the package was built with a compiler
except ImportError:
    _soap_kernel = None

if TYPE_CHECKING:
    from .references import Reference

#: O-O distance (A) of a hydrogen bond: water's first shell ends at ~3.3 A (the first minimum of g_OO), and in
#: every 4-bonded ice the fifth oxygen is farther than 3.9 A
BOND = 3.3
#: largest ring counted: the cages of ice and clathrates are made of rings of four to six
RING_MAX = 6
#: bonds each half of a ring walks beyond its first bond's far end (smallest_rings: two halves and two bonds)
HALF_REACH = (RING_MAX - 2) // 2
#: bond slots per molecule in the bond lists; a molecule with more bonds is not in a 4-bonded network
MAX_BONDS = 6
#: a phase's network counts when no fifth oxygen of its ideal cell is within BOND + CLEAR_GAP: thermal
#: motion left after denoising cannot then make or break a bond (ice II, III, V, VI, XII, IV and VII have
#: fifth oxygens at 2.9-3.8 A)
CLEAR_GAP = 0.5
#: share of a cluster's counted molecules of a phase with a signature the phase has not, above which the name
#: is wrong: real sI, sII, sH gave at most 0.040 (at an sI/liquid interface), TS-I named sI 0.233 (the smallest
#: wrong name measured)
MAX_FOREIGN = 0.1
#: a signature of a molecule that is not counted (it or a neighbour has not four bonds, or it sees liquid)
UNCOUNTED = -1
#: the three pairs of opposite bond angles of a 4-bonded molecule: bonds (a, b) and (c, d)
_OPPOSITE = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2))


#: whether :func:`smallest_rings` uses the compiled kernel where it is built (False: numpy, for comparisons)
COMPILED_RINGS = True
#: the periodic image of a bond as one integer, (a, b, c) cell vectors -> a * IMAGE_BASE**2 + b * IMAGE_BASE + c:
#: linear, so a path's image is the sum of its bonds' (exact while each component stays below IMAGE_BASE / 2)
IMAGE_BASE = 64


@dataclass
class Bonds:
    """The hydrogen-bond network: ``neighbours`` (n, MAX_BONDS) the bonded oxygens (-1: none), ``images``
    (n, MAX_BONDS) the periodic image of each (IMAGE_BASE code; 0: the same image), ``degree`` (n,)."""

    neighbours: np.ndarray
    images: np.ndarray
    degree: np.ndarray


def bonds_of(positions: np.ndarray, cell: np.ndarray | None, pbc) -> Bonds:
    """Every pair closer than :data:`BOND`, as per-molecule slots (the first MAX_BONDS of each)."""
    edges, shift = neighbor_edges(positions, cell, pbc, BOND)
    n = len(positions)
    order = np.lexsort((edges[1], edges[0]))
    i, j, shift = edges[0][order], edges[1][order], shift[order]
    degree = np.bincount(i, minlength=n)
    slot = np.arange(len(i)) - np.concatenate([[0], np.cumsum(degree)[:-1]])[i]
    keep = slot < MAX_BONDS
    neighbours = np.full((n, MAX_BONDS), -1, dtype=np.int64)
    images = np.zeros((n, MAX_BONDS), dtype=np.int64)
    neighbours[i[keep], slot[keep]] = j[keep]
    if cell is not None and len(shift) and np.any(shift):
        cells = np.rint(shift[keep] @ np.linalg.inv(np.asarray(cell, dtype=np.float64))).astype(np.int64)
        images[i[keep], slot[keep]] = cells @ np.array([IMAGE_BASE**2, IMAGE_BASE, 1])
    return Bonds(neighbours, images, degree)


def smallest_rings(bonds: Bonds, centres: np.ndarray, crystal: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The smallest ring through each pair of the first four bonds of each centre: (sizes, clean), both
    (len(centres), 4, 4); size int8, 0 where no ring has at most RING_MAX members; clean bool, whether every
    smallest ring of the pair passes through ``crystal`` molecules only ((n,) bool; None: all are).

    Meet in the middle: from each bond's far end, every path of up to two more bonds (never straight back,
    never through the centre) is walked; two such paths from two bonds of a centre that end on the same
    molecule in the same periodic image close a ring of their lengths + 2 (a ring of six: two bonds and two
    paths of two). The smallest over all meeting molecules is the pair's ring (paths that cross elsewhere
    meet earlier, in a smaller ring). The compiled kernel (``_soap_kernel.smallest_rings``, the same loop written
    out: 1-2 us per molecule against 12 here) runs it where the package was built with a compiler."""
    neighbours, images = bonds.neighbours, bonds.images
    crystal = np.ones(len(neighbours), dtype=bool) if crystal is None else np.asarray(crystal, dtype=bool)
    if _soap_kernel is not None and hasattr(_soap_kernel, "smallest_rings") and COMPILED_RINGS:
        return _soap_kernel.smallest_rings(neighbours, images, crystal, np.asarray(centres, dtype=np.int64),
                                           HALF_REACH)
    row, slot = np.nonzero(neighbours[centres][:, :4] >= 0)
    centre = centres[row]
    node, image = neighbours[centre, slot], images[centre, slot]
    previous, clean = centre, crystal[centre] & crystal[node]
    length = np.zeros(len(node), dtype=np.int64)
    parts = [(row, slot, node, image, length, clean)]
    for steps in range(1, HALF_REACH + 1):
        path = np.repeat(np.arange(len(node)), MAX_BONDS)
        step, step_image = neighbours[node].ravel(), images[node].ravel()
        ok = (step >= 0) & (step != previous[path]) & (step != centre[path])
        path, step, step_image = path[ok], step[ok], step_image[ok]
        row, slot, centre, previous = row[path], slot[path], centre[path], node[path]
        node, image, clean = step, image[path] + step_image, clean[path] & crystal[step]
        parts.append((row, slot, node, image, np.full(len(node), steps), clean))
    row, slot, node, image, length, clean = (np.concatenate(x) for x in zip(*parts))
    # per (centre, meeting molecule and image, bond): the shortest half, clean if all of its shortest are
    place = node * IMAGE_BASE**3 + image  # the meeting molecule and its image, as one integer
    order = np.lexsort((slot * (RING_MAX + 1) + length, place, row))
    row, slot, place, length, clean = (x[order] for x in (row, slot, place, length, clean))
    meet = np.concatenate([[True], (row[1:] != row[:-1]) | (place[1:] != place[:-1])])
    half = meet | np.concatenate([[True], slot[1:] != slot[:-1]])
    starts = np.flatnonzero(half)
    shortest = np.repeat(length[starts], np.diff(np.append(starts, len(length))))
    clean = np.logical_and.reduceat(clean | (length != shortest), starts)
    group = np.cumsum(meet)[starts] - 1
    row, slot, length = row[starts], slot[starts], length[starts]
    n_groups = int(group[-1]) + 1 if len(group) else 0
    half_length = np.full((n_groups, 4), RING_MAX, dtype=np.int64)  # RING_MAX: no half from this bond
    half_clean = np.ones((n_groups, 4), dtype=bool)
    half_length[group, slot] = length
    half_clean[group, slot] = clean
    group_row = np.zeros(n_groups, dtype=np.int64)
    group_row[group] = row
    sizes = np.zeros((len(centres), 4, 4), dtype=np.int8)
    ring_clean = np.ones((len(centres), 4, 4), dtype=bool)
    for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)):
        size = half_length[:, a] + half_length[:, b] + 2
        found = np.flatnonzero(size <= RING_MAX)
        if len(found) == 0:
            continue
        found = found[np.lexsort((size[found], group_row[found]))]
        first = np.flatnonzero(np.concatenate([[True], group_row[found][1:] != group_row[found][:-1]]))
        best = np.repeat(size[found][first], np.diff(np.append(first, len(found))))
        both = half_clean[found, a] & half_clean[found, b]
        ok = np.logical_and.reduceat(both | (size[found] != best), first)
        rows = group_row[found][first]
        sizes[rows, a, b] = sizes[rows, b, a] = size[found][first]
        ring_clean[rows, a, b] = ring_clean[rows, b, a] = ok
    return sizes, ring_clean


def ring_codes(bonds: Bonds, centres: np.ndarray, crystal: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, clean) of the centres: the smallest ring sizes on the three pairs of opposite bond angles, each
    pair ordered and the pairs sorted, as one int64, UNCOUNTED where a centre has not four bonds; and whether
    the centre and every molecule on those rings are ``crystal`` (see :func:`smallest_rings`)."""
    sizes, clean = smallest_rings(bonds, centres, crystal)
    sizes = sizes.astype(np.int64)
    base = RING_MAX + 1
    pairs = np.sort(np.stack([base * np.minimum(sizes[:, a, b], sizes[:, c, d]) + np.maximum(sizes[:, a, b],
                                                                                              sizes[:, c, d])
                              for a, b, c, d in _OPPOSITE], axis=1), axis=1)
    codes = (pairs[:, 0] * base**2 + pairs[:, 1]) * base**2 + pairs[:, 2]
    four = bonds.degree[centres] == 4
    ok = four & clean.all(axis=(1, 2))
    if crystal is not None:
        ok &= np.asarray(crystal, dtype=bool)[centres]
    return np.where(four, codes, UNCOUNTED), ok


def signatures(bonds: Bonds, centres: np.ndarray, crystal: np.ndarray | None = None) -> np.ndarray:
    """(len(centres), 5) int64: each centre's ring code and its four neighbours', sorted; a row of UNCOUNTED
    where the centre or a neighbour has not four bonds, or (with ``crystal``, (n,) bool) where a molecule the
    signature depends on (the centre, its neighbours, the molecules on their smallest rings) is not crystal."""
    centres = np.asarray(centres, dtype=np.int64)
    first_shell = bonds.neighbours[centres][:, :4]
    need = np.unique(np.concatenate([centres, first_shell[first_shell >= 0]]))
    codes = np.full(len(bonds.degree), UNCOUNTED, dtype=np.int64)
    clean = np.zeros(len(bonds.degree), dtype=bool)
    codes[need], clean[need] = ring_codes(bonds, need, crystal)
    shell = np.sort(np.where(first_shell >= 0, codes[np.maximum(first_shell, 0)], UNCOUNTED), axis=1)
    out = np.concatenate([codes[centres][:, None], shell], axis=1)
    shell_clean = np.where(first_shell >= 0, clean[np.maximum(first_shell, 0)], False).all(axis=1)
    out[(out == UNCOUNTED).any(axis=1) | ~(clean[centres] & shell_clean)] = UNCOUNTED
    return out


def is_network(positions: np.ndarray, cell: np.ndarray) -> bool:
    """Whether an ideal periodic cell is a 4-bonded network the census can count: four oxygens within BOND of
    every one, and no fifth within BOND + CLEAR_GAP."""
    edges, shift = neighbor_edges(positions, cell, (True, True, True), BOND + CLEAR_GAP)
    d = np.linalg.norm(positions[edges[1]] - positions[edges[0]] + shift, axis=1)
    n = len(positions)
    return bool(np.all(np.bincount(edges[0], minlength=n) == 4) and np.all(d < BOND))


@dataclass
class RingTable:
    """The signatures each counted phase's ideal cell holds: ``codes`` (m,) phase code of each row,
    ``signatures`` (m, 5). Empty: no ring census (a model file written before it existed)."""

    codes: np.ndarray
    signatures: np.ndarray

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int32).ravel()
        self.signatures = np.asarray(self.signatures, dtype=np.int64).reshape(-1, 5)
        if len(self.codes) != len(self.signatures):
            raise ClassifierError(f"ring table arrays disagree: {len(self.codes)} codes, "
                                  f"{len(self.signatures)} signatures")

    @classmethod
    def empty(cls) -> "RingTable":
        return cls(np.zeros(0, dtype=np.int32), np.zeros((0, 5), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.codes)

    def counted_codes(self) -> np.ndarray:
        """The phase codes the census counts."""
        return np.unique(self.codes)

    def foreign(self, codes: np.ndarray, signatures_: np.ndarray) -> np.ndarray:
        """(n,) bool: the signature is not one of its phase's (False where the phase is not counted)."""
        codes = np.asarray(codes)
        out = np.zeros(len(codes), dtype=bool)
        for code in self.counted_codes():
            rows = np.flatnonzero(codes == code)
            known = {tuple(s) for s in self.signatures[self.codes == code].tolist()}
            out[rows] = [tuple(s) not in known for s in signatures_[rows].tolist()]
        return out


def fit_ring_table(references: "list[Reference]", counted: np.ndarray) -> RingTable:
    """The ring table from each reference's ideal periodic cell (``references.Reference``, in code order);
    ``counted``: the phase codes to count where their cell :func:`is_network` (the site census's: those of
    several sites)."""
    codes, rows = [], []
    counted = set(np.asarray(counted).tolist())
    for code, ref in enumerate(references, start=1):
        positions, cell = ref.atoms.positions, ref.atoms.cell.array
        if code not in counted or not is_network(positions, cell):
            continue
        found = np.unique(signatures(bonds_of(positions, cell, (True, True, True)), np.arange(len(positions))),
                          axis=0)
        codes.append(np.full(len(found), code, dtype=np.int32))
        rows.append(found)
    if not codes:
        return RingTable.empty()
    return RingTable(np.concatenate(codes), np.concatenate(rows))


def ring_flags(table: RingTable, positions: np.ndarray, cell: np.ndarray | None, pbc, codes: np.ndarray,
               n_centres: int | None = None) -> np.ndarray:
    """(n_centres,) int32 per centre (the first ``n_centres`` of ``positions``; default all): 1 where a molecule
    of a counted phase carries a signature its phase has not, 0 where it carries one of its phase's, UNCOUNTED
    where it is of no counted phase or its signature reaches a molecule that is not crystal-labelled (a phase or
    other crystal): near the ice's edge rings pass through liquid. ``codes`` (len(positions),): the labels after
    the boundary step. The positions must reach every ring of six through a centre's neighbours (the LAMMPS
    cloud, SOAP reach + 0.5 A beyond the centres, does: such a ring lies within ~8.7 A of the centre)."""
    n = len(positions) if n_centres is None else n_centres
    codes = np.asarray(codes, dtype=np.int32)
    out = np.full(n, UNCOUNTED, dtype=np.int32)
    centres = np.flatnonzero(np.isin(codes[:n], table.counted_codes()))
    if len(centres) == 0:
        return out
    bonds = bonds_of(np.asarray(positions, dtype=np.float64), cell, pbc)
    sig = signatures(bonds, centres, (codes > LIQUID) | (codes == OTHER_CRYSTAL))
    counted = sig[:, 0] != UNCOUNTED
    out[centres[counted]] = table.foreign(codes[centres[counted]], sig[counted]).astype(np.int32)
    return out


def ring_count_rows(cluster_ids: np.ndarray, codes: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """(m, 4) int64 rows (cluster ID, phase code, foreign 0/1, molecules) over the counted molecules in a
    cluster."""
    return count_rows((np.asarray(cluster_ids) > 0) & (np.asarray(flags) >= 0), cluster_ids, codes, flags)


def foreign_ring_rows(rows: np.ndarray) -> np.ndarray:
    """(m,) bool for rows (cluster ID, phase code, foreign 0/1, molecules), several rows of one key summed:
    True where the row's cluster holds its phase with more than MAX_FOREIGN of at least MIN_NAMED counted
    molecules on foreign signatures."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    out = np.zeros(len(rows), dtype=bool)
    if len(rows) == 0:
        return out
    groups, inverse = np.unique(rows[:, :2], axis=0, return_inverse=True)
    inverse = inverse.ravel()
    counted = np.bincount(inverse, weights=rows[:, 3], minlength=len(groups))
    foreign = np.bincount(inverse, weights=rows[:, 3] * (rows[:, 2] == 1), minlength=len(groups))
    bad = (counted >= MIN_NAMED) & (foreign > MAX_FOREIGN * counted)
    return bad[inverse]


def foreign_ring_groups(codes: np.ndarray, flags: np.ndarray, cluster_ids: np.ndarray) -> set[tuple[int, int]]:
    """The (cluster ID, phase code) pairs whose rings are not the phase's; ``flags`` from :func:`ring_flags` on
    the same ``codes``, ``cluster_ids`` their ice clusters (0: none)."""
    rows = ring_count_rows(cluster_ids, codes, flags)
    return {(int(r[0]), int(r[1])) for r in rows[foreign_ring_rows(rows)]}


def ring_census(codes: np.ndarray, flags: np.ndarray, cluster_ids: np.ndarray) -> np.ndarray:
    """``codes`` with the molecules of each (cluster, phase) whose rings are not the phase's made other
    crystal."""
    return other_crystal_groups(codes, cluster_ids, foreign_ring_groups(codes, flags, cluster_ids))
