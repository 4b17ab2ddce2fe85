"""Neighbour lists and periodic-box helpers shared by the denoiser, the training loop and the tests."""

from __future__ import annotations

import numpy as np
from matscipy.neighbours import neighbour_list


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
