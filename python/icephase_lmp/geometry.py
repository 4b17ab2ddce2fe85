"""Neighbour lists and periodic-box helpers shared by the denoiser, the training loop and the tests."""

from __future__ import annotations

import numpy as np
from matscipy.neighbours import neighbour_list


def _is_wide_orthorhombic(cell: np.ndarray, cutoff: float) -> bool:
    """An orthorhombic cell wider than twice ``cutoff``: every pair within the cutoff then has exactly one
    periodic image in reach, which scipy's periodic k-d tree (``boxsize``) finds."""
    lengths = np.diag(cell)
    return not np.any(cell != np.diag(lengths)) and bool(np.all(lengths > 2.0 * cutoff))


def _wrap_orthorhombic(positions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions moved into [0, L) along each axis, as scipy's periodic k-d tree requires."""
    wrapped = np.mod(positions, lengths)
    wrapped[wrapped >= lengths] = 0.0  # np.mod can round a tiny negative coordinate up to the length itself
    return wrapped


def _orthorhombic_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(i, j, vectors) of every directed pair closer than ``cutoff``, in no particular order (``vectors[k]``
    from atom i to the image of j in reach), or None where this search does not apply.

    It applies to a box periodic in all three directions, orthorhombic, and wider than twice the cutoff, as
    most MD boxes are: then every pair within the cutoff has exactly one periodic image in reach, and
    scipy's periodic k-d tree finds the pairs faster than matscipy's cell list at long cutoffs (a
    1,024-molecule liquid box at the SOAP reach, 8.7 A: the tree's search 7-9 ms, matscipy's list 46 ms).
    At the denoiser's 4.5 A matscipy is as fast and its pairs come sorted by centre, which the denoiser's
    blocks of edges use, so :func:`neighbor_edges` keeps it."""
    from scipy.spatial import cKDTree

    if not pbc.all() or not _is_wide_orthorhombic(cell, cutoff) or len(positions) < 2:
        return None
    lengths = np.diag(cell)
    pairs = cKDTree(_wrap_orthorhombic(positions, lengths), boxsize=lengths).query_pairs(cutoff, output_type="ndarray")
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    direct = positions[j] - positions[i]
    images = -np.round(direct / lengths)  # the image of j nearest to i, in box lengths
    vectors = direct + images * lengths
    keep = np.einsum("ij,ij->i", vectors, vectors) < cutoff * cutoff  # the tree keeps pairs at <= cutoff
    i, j, vectors = i[keep], j[keep], vectors[keep]
    return np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([vectors, -vectors])


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
    i, j, s = neighbour_list("ijS", positions=pos, cell=cell, pbc=pbc_arr, cutoff=cutoff)
    return np.stack([i, j]).astype(np.int64), s.astype(np.float64) @ cell


def neighbor_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool] | np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """All directed pairs (i, j) of a periodic box closer than ``cutoff``, in no particular order (for
    counts over pairs; :func:`neighbor_edges` gives them sorted, with their image shifts)."""
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc_arr = np.asarray(pbc, dtype=bool)
    found = _orthorhombic_pairs(pos, cell, pbc_arr, cutoff)
    if found is not None:
        return found[0], found[1]
    i, j = neighbour_list("ij", positions=pos, cell=cell, pbc=pbc_arr, cutoff=cutoff)
    return i.astype(np.int64), j.astype(np.int64)


def cloud_pairs(positions: np.ndarray, centres: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Directed pairs (i, j) of an open cloud with ``i`` one of ``centres`` and ``|x_j - x_i| < cutoff``, j != i.

    The LAMMPS compute's cloud holds a rank's local atoms and every ghost within the SOAP reach of them; in a
    small box the ghosts outnumber the locals several times, and a full neighbour list of the cloud would
    pay for all their pairs. Searching around the centres only pays for the pairs that are used. The pairs
    come sorted by ``i``, then ``j``: a fixed order, whatever order the tree finds them in."""
    from scipy.spatial import cKDTree

    pos = np.ascontiguousarray(positions, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.int64)
    if len(centres) == 0 or len(pos) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    found = cKDTree(pos[centres]).sparse_distance_matrix(cKDTree(pos), cutoff, output_type="ndarray")
    i, j = centres[found["i"].astype(np.int64)], found["j"].astype(np.int64)
    # sparse_distance_matrix keeps pairs at distance <= cutoff; neighbour lists use < cutoff
    keep = (i != j) & (found["v"] < cutoff)
    i, j = i[keep], j[keep]
    order = np.lexsort((j, i))
    return i[order], j[order]


def neighbor_vectors(
    positions: np.ndarray, cell: np.ndarray | None, pbc, cutoff: float, centers: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors from each centre to every other atom (and periodic image) closer than ``cutoff``.

    Returns ``first`` ([P] int64, the centre's index in ``centers``, or the atom index when ``centers`` is
    None) and ``vectors`` ([P, 3]), in no particular order; a centre's pair with itself is left out.
    Periodic boxes go through matscipy's ``"iD"`` list (the vectors come with it, cheaper than building
    them from :func:`neighbor_edges`' shifts) and ``centers`` must then be unique; an open cloud (the
    LAMMPS compute's local + ghost atoms) is searched around the centres only, as the ghosts can outnumber
    them several times.
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    pbc_arr = np.asarray(pbc, dtype=bool)
    if cell is not None and pbc_arr.any():
        cell = np.asarray(cell, dtype=np.float64)
        found = _orthorhombic_pairs(pos, cell, pbc_arr, cutoff)
        if found is not None:
            first, _, vectors = found
        else:
            first, vectors = neighbour_list("iD", positions=pos, cell=cell, pbc=pbc_arr, cutoff=cutoff)
            first = first.astype(np.int64)
        if centers is not None:  # keep the centres' pairs, renumbered in centre order
            rank = np.full(len(pos), -1, dtype=np.int64)
            rank[centers] = np.arange(len(centers))
            first = rank[first]
            keep = first >= 0
            first, vectors = first[keep], vectors[keep]
        return first, vectors
    from scipy.spatial import cKDTree

    targets = pos if centers is None else pos[centers]
    found = cKDTree(targets).sparse_distance_matrix(cKDTree(pos), cutoff, output_type="ndarray")
    first, second = found["i"].astype(np.int64), found["j"].astype(np.int64)
    mine = second == (first if centers is None else centers[first])
    first, second = first[~mine], second[~mine]
    return first, pos[second] - targets[first]


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the box (the quantity a cutoff must fit in)."""
    cell = np.asarray(cell, dtype=np.float64)
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])


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

    A k-d tree asks each atom for its nearest neighbour only, so the memory stays linear in the number of
    atoms even when many atoms sit on one spot (a full neighbour list would hold every pair). A wide
    orthorhombic box periodic in x, y and z goes to scipy's periodic tree; other periodic directions use the
    3^3 neighbouring images of the wrapped atoms, which hold every pair closer than the box's perpendicular
    width; a box narrower than ``distance`` is not water anyway."""
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    if n < 2:
        return np.zeros(n, dtype=bool)
    pbc_arr = np.asarray(pbc, dtype=bool)
    points = pos
    if cell is not None:
        cell = np.asarray(cell, dtype=np.float64)
    if cell is not None and pbc_arr.all() and _is_wide_orthorhombic(cell, distance):
        # the common MD box: scipy's periodic tree answers directly, without 27 copies of the atoms
        lengths = np.diag(cell)
        wrapped = _wrap_orthorhombic(pos, lengths)
        dist, _ = cKDTree(wrapped, boxsize=lengths).query(wrapped, k=2)
        return dist[:, 1] < distance
    if cell is not None and pbc_arr.any():
        pos = wrap_positions(pos, cell, pbc_arr)
        ranges = [(-1, 0, 1) if p else (0,) for p in pbc_arr]
        shifts = np.array([[i, j, k] for i in ranges[0] for j in ranges[1] for k in ranges[2]], dtype=np.float64)
        points = (pos[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, 3)
    tree = cKDTree(points)
    # the two nearest points of each atom: itself and its nearest other atom (or a duplicate of it)
    dist, _ = tree.query(pos, k=2)
    return dist[:, 1] < distance
