"""Neighbour lists and periodic-box helpers shared by the denoiser, the training loop and the tests."""

from __future__ import annotations

import itertools

import numpy as np
from matscipy.neighbours import neighbour_list

try:
    from . import _soap_kernel  # its compiled neighbour search, where the package was built with a compiler
except ImportError:
    _soap_kernel = None


#: bins of the cutoff's width that a box must hold along each cell vector for the compiled periodic search
#: (_soap_kernel.periodic_pairs: then every image of an atom falls in at most one of the 27 bins searched)
PERIODIC_BINS = 3


def neighbor_edges(
    positions: np.ndarray, cell: np.ndarray | None, pbc: tuple[bool, bool, bool] | np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """All directed pairs (i, j) closer than ``cutoff``, with the Cartesian image shift of j.

    Returns ``edge_index`` ([2, E] int64) and ``shift`` ([E, 3] float64) such that the edge vector is
    ``positions[j] - positions[i] + shift``. ``cell`` rows are the box vectors; ``None`` (or no periodic
    direction) means an open cluster, as LAMMPS's local + ghost atoms are.
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    pbc_arr = np.asarray(pbc, dtype=bool)
    if cell is None or not pbc_arr.any():
        # matscipy wants a cell even for an open cluster: any box enclosing the atoms will do.
        span = np.ptp(pos, axis=0) if len(pos) else np.zeros(3)
        box = np.diag(span + 2.0 * cutoff + 1.0)
        pos = pos - pos.min(axis=0) + cutoff if len(pos) else pos
        i, j = neighbour_list("ij", positions=pos, cell=box, pbc=np.zeros(3, bool), cutoff=cutoff)
        return np.stack([i, j]).astype(np.int64), np.zeros((len(i), 3))
    cell = np.asarray(cell, dtype=np.float64)
    if _compiled_periodic(cell, pbc_arr, cutoff):
        # the compiled search: 2-3x faster than matscipy's here (2.95-4.79 against 5.99-12.47 us per oxygen on
        # GCIceNet frames, docs/validation.md, seventh session), which was a fifth of the offline denoising (8
        # searches per frame); the same pairs, in another order within each i
        return _soap_kernel.periodic_pairs(pos, cell, cutoff)
    i, j, s = neighbour_list("ijS", positions=pos, cell=cell, pbc=pbc_arr, cutoff=cutoff)
    return np.stack([i, j]).astype(np.int64), s.astype(np.float64) @ cell


def neighbor_pairs(
    positions: np.ndarray, cell: np.ndarray | None, pbc: tuple[bool, bool, bool] | np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each pair closer than ``cutoff`` once, as (i, j) with i < j: :func:`neighbor_edges`'s list without the
    reverse of every edge (j, i, -shift), which the denoiser's ``forward_pairs`` implies. None where an atom
    neighbours its own periodic image (a box narrower than twice the cutoff): such an edge is its own
    pair's other half, and the caller takes the full list instead.

    The compiled search writes only these pairs (half of the list, and no filtering afterwards)."""
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    if _compiled_periodic(cell, pbc, cutoff):
        return _soap_kernel.periodic_pairs(pos, np.asarray(cell, dtype=np.float64), cutoff, True)
    edge_index, shift = neighbor_edges(pos, cell, pbc, cutoff)
    if np.any(edge_index[0] == edge_index[1]):
        return None
    one_way = edge_index[0] < edge_index[1]
    return edge_index[:, one_way], shift[one_way]


def _compiled_periodic(cell: np.ndarray | None, pbc, cutoff: float) -> bool:
    """Whether the compiled periodic search serves this box: built, fully periodic, PERIODIC_BINS cutoffs wide."""
    return (_soap_kernel is not None and cell is not None and bool(np.all(pbc))
            and bool(np.all(perpendicular_widths(cell) >= PERIODIC_BINS * cutoff)))


def cloud_pairs(positions: np.ndarray, centres: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Directed pairs (i, j) of an open cloud with ``i`` one of ``centres`` and ``|x_j - x_i| < cutoff``, j != i.

    The LAMMPS compute's cloud holds a rank's local atoms and every ghost within the SOAP reach of them; in a
    small box the ghosts outnumber the locals several times, and a full neighbour list of the cloud would
    pay for all their pairs. Searching around the centres only pays for the pairs that are used. The pairs
    come in centre order (ascending centres: sorted by ``i``), then sorted by ``j``: a fixed order, whatever
    order the search finds them in. The compiled search (``_soap_kernel.pairs_within``) where it was built,
    else a k-d tree."""
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.int64)
    if len(centres) == 0 or len(pos) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if _soap_kernel is not None:
        return _soap_kernel.pairs_within(pos, centres, cutoff)
    from scipy.spatial import cKDTree

    found = cKDTree(pos[centres]).sparse_distance_matrix(cKDTree(pos), cutoff, output_type="ndarray")
    i, j, k = centres[found["i"].astype(np.int64)], found["j"].astype(np.int64), found["i"].astype(np.int64)
    # sparse_distance_matrix keeps pairs at distance <= cutoff; neighbour lists use < cutoff
    keep = (i != j) & (found["v"] < cutoff)
    i, j, k = i[keep], j[keep], k[keep]
    order = np.lexsort((j, k))
    return i[order], j[order]


def periodic_cloud(
    positions: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool] | np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """A periodic box as an open cloud: its atoms wrapped into the cell (rows 0..N-1, in their order), then
    every periodic image of them that lies within ``reach`` of the cell, as LAMMPS's ghost atoms do.

    Every neighbour closer than ``reach`` to an atom, its own images included in a small box, is then a
    point of the cloud, so an open search around rows 0..N-1 finds exactly the periodic neighbours; any
    cell shape, any periodic directions. (An image is kept where each of its fractional coordinates along a
    periodic direction lies within reach / width of the cell: a slight superset, which the search's
    distance test trims.)

    Returns
    -------
    cloud : numpy.ndarray, shape (M, 3)
    owner : numpy.ndarray of int64, shape (M,)
        The atom of which each point is a copy (``owner[:N]`` is ``arange(N)``).
    """
    pos = wrap_positions(positions, cell, pbc)
    pbc_arr = np.asarray(pbc, dtype=bool)
    owner = np.arange(len(pos), dtype=np.int64)
    if cell is None or not pbc_arr.any() or len(pos) == 0:
        return pos, owner
    cell = np.asarray(cell, dtype=np.float64)
    frac = np.linalg.solve(cell.T, pos.T).T
    margin = reach / perpendicular_widths(cell) + 1e-9  # the slack keeps a point at exactly reach in
    reach_cells = np.where(pbc_arr, np.ceil(margin), 0).astype(int)
    points, owners = [pos], [owner]
    for shift in itertools.product(*(range(-k, k + 1) for k in reach_cells)):
        if not any(shift):
            continue
        moved = frac + shift
        near = np.all(((moved > -margin) & (moved < 1.0 + margin)) | ~pbc_arr, axis=1)
        kept = np.flatnonzero(near)
        points.append(pos[kept] + np.asarray(shift, dtype=np.float64) @ cell)
        owners.append(kept)
    return np.concatenate(points), np.concatenate(owners)


def periodic_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool] | np.ndarray, centres: np.ndarray,
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Directed pairs (i, j) of a periodic box with ``i`` one of ``centres`` and an image of atom j closer than
    ``cutoff`` (j = i where i meets its own image in a small box), as :func:`cloud_pairs` orders them."""
    cloud, owner = periodic_cloud(positions, cell, pbc, cutoff)
    i, j = cloud_pairs(cloud, centres, cutoff)
    return i, owner[j]


def centre_pairs(
    positions: np.ndarray, cell: np.ndarray | None, pbc, centres: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Directed pairs (i, j), ``i`` one of ``centres``, closer than ``cutoff``: :func:`periodic_pairs` in a
    periodic box, :func:`cloud_pairs` in an open cloud (``cell`` None or no periodic direction: the LAMMPS
    compute's local atoms and ghosts)."""
    if cell is None or not np.any(pbc):
        return cloud_pairs(positions, centres, cutoff)
    return periodic_pairs(positions, cell, pbc, centres, cutoff)


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the box (the quantity a cutoff must fit in)."""
    cell = np.asarray(cell, dtype=np.float64)
    # |det| / |a_(k+1) x a_(k+2)|; the cross products written out (np.cross costs ~10 us a call, and the
    # denoiser's searches ask for these three numbers every iteration)
    a, b, c = cell
    faces = np.array([[b[1] * c[2] - b[2] * c[1], b[2] * c[0] - b[0] * c[2], b[0] * c[1] - b[1] * c[0]],
                      [c[1] * a[2] - c[2] * a[1], c[2] * a[0] - c[0] * a[2], c[0] * a[1] - c[1] * a[0]],
                      [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]])
    volume = abs(float(a @ faces[0]))
    return volume / np.sqrt((faces * faces).sum(axis=1))


def minimum_image(delta: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Displacements ``delta`` ([N, 3]) folded to their shortest periodic image (good for |d| < half a box)."""
    frac = delta @ np.linalg.inv(cell)
    frac -= np.round(frac)
    return frac @ cell


def wrap_positions(
    positions: np.ndarray, cell: np.ndarray | None, pbc: tuple[bool, bool, bool] | np.ndarray,
    origin: np.ndarray | None = None,
) -> np.ndarray:
    """``positions`` moved by whole box vectors into the cell ``origin + [0, 1)^3 @ cell`` along every
    periodic direction (any triclinic cell); open directions and a missing cell leave them as they are.

    The denoiser's neighbour search and DScribe's periodic SOAP both assume atoms inside the cell: an
    unwrapped dump (``xu yu zu``) or a strongly tilted cell otherwise gives wrong environments."""
    pos = np.array(positions, dtype=np.float64)
    pbc_arr = np.asarray(pbc, dtype=bool)
    if cell is None or not pbc_arr.any() or len(pos) == 0:
        return pos
    cell = np.asarray(cell, dtype=np.float64)
    shift = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
    frac = np.linalg.solve(cell.T, (pos - shift).T).T
    # whole box vectors only, so that atoms already inside the cell keep their coordinates bit for bit
    images = np.floor(frac)
    images[:, ~pbc_arr] = 0.0
    outside = images.any(axis=1)
    pos[outside] -= images[outside] @ cell
    return pos


def too_close(
    positions: np.ndarray, cell: np.ndarray | None, pbc: tuple[bool, bool, bool] | np.ndarray, distance: float
) -> np.ndarray:
    """(N,) bool: atoms with another atom (or periodic image) closer than ``distance``.

    Each atom's search stops at its first neighbour that close (the compiled cell list,
    ``_soap_kernel.any_within``; without it a k-d tree asks for the nearest neighbour only), so the memory
    stays linear in the number of atoms even when many atoms sit on one spot (a full neighbour list would
    hold every pair). A periodic box is searched as its atoms plus their images within ``distance``
    (:func:`periodic_cloud`, any cell)."""
    n = len(positions)
    if n < 2:
        return np.zeros(n, dtype=bool)
    points, _ = periodic_cloud(np.asarray(positions, dtype=np.float64), cell, pbc, distance)
    if _soap_kernel is not None:
        return _soap_kernel.any_within(points, np.arange(n), distance)
    from scipy.spatial import cKDTree

    # the two nearest points of each atom: itself and its nearest other atom, image or duplicate
    dist, _ = cKDTree(points).query(points[:n], k=2)
    return dist[:, 1] < distance
