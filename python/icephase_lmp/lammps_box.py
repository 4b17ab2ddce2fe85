"""LAMMPS box maths, in one place: the restricted triclinic form of a cell, small tilts, and the
``ITEM: BOX BOUNDS`` lines of a dump read and written.

LAMMPS keeps a periodic cell as *restricted triclinic*: box vectors as rows of a lower-triangular matrix
(a along x, b in the xy plane), ``[[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]]``, with its lower corner at
``origin`` (xlo, ylo, zlo). Lengths are in Angstrom throughout. See
https://docs.lammps.org/Howto_triclinic.html and the ``dump`` page for the bounding-box form.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["cell_from_dump_bounds", "dump_box", "reduce_tilts", "restricted_triclinic"]

#: The three kinds of ``ITEM: BOX BOUNDS`` header: ``pp pp pp`` (orthogonal), ``xy xz yz pp pp pp``
#: (restricted triclinic, as bounding box and tilts), ``abc origin pp pp pp`` (LAMMPS >= 2024: general
#: triclinic, as box vectors and origin).
BoundsStyle = Literal["orthogonal", "tilted", "general"]


def restricted_triclinic(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a cell into LAMMPS's restricted triclinic form.

    ASE's :class:`~ase.calculators.lammps.coordinatetransform.Prism` does the work (the cell without its tilt
    reduction); one home for the data-file writer, the label writer and the tests.

    Parameters
    ----------
    cell : numpy.ndarray, shape (3, 3)
        Box vectors as rows, Angstrom, right-handed.

    Returns
    -------
    lammps_cell : numpy.ndarray, shape (3, 3)
        Lower triangular, positive diagonal: ``cell @ rotation`` up to rounding.
    rotation : numpy.ndarray, shape (3, 3)
        Orthogonal; Cartesian row vectors rotate as ``positions @ rotation``.
    """
    from ase.calculators.lammps.coordinatetransform import Prism  # here: reading a dump needs no ASE

    prism = Prism(np.asarray(cell, dtype=np.float64))
    return prism.lammps_tilt, prism.rot_mat


def reduce_tilts(cell: np.ndarray) -> np.ndarray:
    """The same lattice with small tilts: b + i a and c + i a + j b chosen to minimise LAMMPS's skew measures.

    LAMMPS warns ("Triclinic box skew is large") when |xy|/ly > 0.5 or (|xz| + |yz|)/lz > 0.5. ASE's
    tilt reduction (``Prism(reduce_cell=True)``) bounds each tilt in turn and can leave |xz| + |yz| larger:
    for rows (10, 0, 0), (5, 10, 0), (0, 6, 10) it gives c = (-5, -4, 10), sum 9, where c itself (sum 6)
    is the best. So this search over small shifts stays.

    Parameters
    ----------
    cell : numpy.ndarray, shape (3, 3)
        Restricted triclinic cell (rows), Angstrom.

    Returns
    -------
    numpy.ndarray, shape (3, 3)
        Rows a, b + i a, c + i a + j b.
    """
    a, b, c = (row.copy() for row in cell)
    b = b - np.round(b[0] / a[0]) * a
    shifts = [(i, j) for i in range(-3, 4) for j in range(-3, 4)]
    c = min((c + i * a + j * b for i, j in shifts), key=lambda v: (abs(v[0]) + abs(v[1]), abs(v[1])))
    return np.array([a, b, c])


def cell_from_dump_bounds(values: list[list[float]], style: BoundsStyle) -> tuple[np.ndarray, np.ndarray]:
    """The cell (rows) and origin a dump's three ``BOX BOUNDS`` lines describe.

    Parameters
    ----------
    values : list of 3 lists of float
        The numbers of the three lines: ``lo hi`` (orthogonal), ``lo_bound hi_bound tilt`` (tilted: the
        tilts are xy, xz, yz in that order), ``ax ay az origin_x`` and so on (general).
    style : {"orthogonal", "tilted", "general"}
        The header's kind (:data:`BoundsStyle`).

    Returns
    -------
    cell : numpy.ndarray, shape (3, 3)
        Box vectors as rows, Angstrom.
    origin : numpy.ndarray, shape (3,)
        The box corner (xlo, ylo, zlo), Angstrom.
    """
    if style == "general":
        return np.array([v[:3] for v in values]), np.array([v[3] for v in values])
    if style == "orthogonal":
        lo = np.array([v[0] for v in values])
        hi = np.array([v[1] for v in values])
        return np.diag(hi - lo), lo
    # A tilted dump stores the bounds of the tilted box, e.g. xlo_bound = xlo + min(0, xy, xz, xy + xz), so
    # the real xlo/xhi/ylo/yhi are recovered by subtracting the same extremes (inverse of dump_box).
    (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = (v[:3] for v in values)
    xlo = xlo_b - min(0.0, xy, xz, xy + xz)
    xhi = xhi_b - max(0.0, xy, xz, xy + xz)
    ylo = ylo_b - min(0.0, yz)
    yhi = yhi_b - max(0.0, yz)
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    return cell, np.array([xlo, ylo, zlo])


def dump_box(
    cell: np.ndarray | None, origin: np.ndarray, pbc: tuple[bool, bool, bool], positions: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """The ``ITEM: BOX BOUNDS`` lines of a dump frame, and its positions in the frame they describe.

    Parameters
    ----------
    cell : numpy.ndarray, shape (3, 3), or None
        Box vectors as rows, Angstrom; a cell that is not lower triangular is rotated into LAMMPS form
        (:func:`restricted_triclinic`), and the positions with it. ``None``: no box; LAMMPS and OVITO still
        need one, so the lines enclose the atoms with a 1 A margin, not periodic.
    origin : numpy.ndarray, shape (3,)
        The box corner, Angstrom.
    pbc : tuple of 3 bool
        Periodicity along each box vector.
    positions : numpy.ndarray, shape (n, 3)
        Angstrom.

    Returns
    -------
    lines : list of str
        The header line and the three bounds lines.
    positions : numpy.ndarray, shape (n, 3)
        ``positions``, rotated about ``origin`` where the cell was.
    """
    if cell is None:
        # 1 A margin keeps the box non-degenerate
        lo = positions.min(axis=0) - 1.0 if len(positions) else np.zeros(3)
        hi = positions.max(axis=0) + 1.0 if len(positions) else np.ones(3)
        lines = ["ITEM: BOX BOUNDS ff ff ff"] + [f"{lo[k]:.8f} {hi[k]:.8f}" for k in range(3)]
        return lines, positions
    scale = float(np.abs(cell).max()) or 1.0
    if np.abs(cell[np.triu_indices(3, 1)]).max() > 1e-10 * scale:
        cell, rotation = restricted_triclinic(cell)
        positions = origin + (positions - origin) @ rotation
    flags = " ".join("pp" if p else "ff" for p in pbc)
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    xlo, ylo, zlo = origin
    if xy == 0.0 and xz == 0.0 and yz == 0.0:
        lines = [f"ITEM: BOX BOUNDS {flags}"]
        lines += [f"{lo:.8f} {lo + length:.8f}" for lo, length in zip(origin, (lx, ly, lz))]
        return lines, positions
    # the bounding-box form LAMMPS documents for triclinic dumps (inverse of cell_from_dump_bounds)
    lines = [
        f"ITEM: BOX BOUNDS xy xz yz {flags}",
        f"{xlo + min(0.0, xy, xz, xy + xz):.8f} {xlo + lx + max(0.0, xy, xz, xy + xz):.8f} {xy:.8f}",
        f"{ylo + min(0.0, yz):.8f} {ylo + ly + max(0.0, yz):.8f} {xz:.8f}",
        f"{zlo:.8f} {zlo + lz:.8f} {yz:.8f}",
    ]
    return lines, positions
