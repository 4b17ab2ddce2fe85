"""Ice clusters: connected groups of ice-labelled molecules (what nucleation studies read off).

Two ice-labelled oxygens closer than the first-shell radius (``BoundarySettings.shell``, 3.5 A) belong to the
same cluster, as in LAMMPS's ``compute cluster/atom`` with that cutoff (docs/nucleation.md gives the on-the-fly
recipe). Cluster ids are 1..K in order of decreasing size (ties: lowest atom index first); 0 for molecules
that are not ice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .geometry import neighbor_edges
from .phases import LIQUID


@dataclass
class Clusters:
    """Ice clusters of one configuration, numbered by decreasing size."""

    ids: np.ndarray  # (n,) int32: 1 = the largest cluster, 0 = not ice
    sizes: np.ndarray  # (K,) sizes of clusters 1..K

    @property
    def largest(self) -> int:
        """Molecules in the largest cluster (0 without ice)."""
        return int(self.sizes[0]) if len(self.sizes) else 0

    def size_of_each(self) -> np.ndarray:
        """(n,) int64: the size of each molecule's cluster, 0 for molecules not ice."""
        sizes = np.zeros(len(self.ids), dtype=np.int64)
        ice = self.ids > 0
        sizes[ice] = self.sizes[self.ids[ice] - 1]
        return sizes


def ice_clusters(codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, cutoff: float) -> Clusters:
    """Clusters of molecules with a phase code above liquid (any ice phase: a nucleus may hold Ih and Ic).

    Parameters
    ----------
    codes : array_like of int, shape (N,)
        Phase codes; every code above ``LIQUID`` (0) is ice.
    positions : array_like, shape (N, 3)
        Where the bonds are measured, Angstrom (the pipeline passes the input positions, as LAMMPS's
        ``compute cluster/atom`` sees them).
    cell : array_like, shape (3, 3) or None
        Cell vectors as rows, Angstrom; ``None``: no box.
    pbc : tuple of 3 bool
        Periodicity along each cell vector; a cluster may cross the cell's faces.
    cutoff : float
        Two ice molecules closer than this (Angstrom) are in one cluster.

    Returns
    -------
    Clusters
        ``ids`` of shape (N,) (1: the largest, 0: not ice) and ``sizes`` of shape (K,), largest first.
    """
    codes = np.asarray(codes)
    ice = np.nonzero(codes > LIQUID)[0]
    ids = np.zeros(len(codes), dtype=np.int32)
    if len(ice) == 0:
        return Clusters(ids, np.zeros(0, dtype=np.int64))
    edges, _ = neighbor_edges(np.asarray(positions, dtype=np.float64)[ice], cell, pbc, cutoff)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(len(ice), len(ice)))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    # renumber by decreasing size; ties by the lowest member index (labels are numbered by first member)
    rank = np.lexsort((np.arange(len(sizes)), -sizes))
    new_id = np.empty(len(sizes), dtype=np.int32)
    new_id[rank] = np.arange(1, len(sizes) + 1)
    ids[ice] = new_id[label]
    return Clusters(ids, sizes[rank])
