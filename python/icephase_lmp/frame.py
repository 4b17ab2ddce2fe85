"""The unit every reader yields and every label writer takes: :class:`Frame`, the selected atoms of one
trajectory frame, and :func:`wrapped`, which puts them inside their cell."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import wrap_positions

__all__ = ["Frame", "wrapped"]


@dataclass
class Frame:
    """The selected atoms of one trajectory frame.

    Attributes
    ----------
    positions : numpy.ndarray, shape (n, 3)
        Positions of the ``n`` selected atoms, Angstrom, wrapped into the cell along its periodic directions.
    cell : numpy.ndarray, shape (3, 3), or None
        Box vectors as rows, Angstrom, in the LAMMPS convention (a along x, b in the xy plane) when the file
        describes the box that way; ``None``: no box.
    origin : numpy.ndarray, shape (3,)
        The box corner (LAMMPS xlo, ylo, zlo), Angstrom; it only matters for writing the box back, since
        periodic images do not depend on it.
    pbc : tuple of 3 bool
        Periodicity along each cell vector.
    index : int
        The frame's position in the file (0-based).
    timestep : int or None
        The MD timestep, where the file stores one.
    atom_ids : numpy.ndarray of int64, shape (n,)
        The atoms' ids in the file (LAMMPS ids, MDAnalysis or ASE indices).
    columns : dict of str to numpy.ndarray, shape (n,)
        Every other per-atom column of a LAMMPS dump, as text.
    """

    positions: np.ndarray
    cell: np.ndarray | None
    origin: np.ndarray
    pbc: tuple[bool, bool, bool]
    index: int
    timestep: int | None
    atom_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: every other per-atom column of a LAMMPS dump as text (e.g. "c_ice[1]"), selected atoms only;
    #: e.g. ``frame.columns["c_ice[1]"].astype(float)`` gives what `compute icephase` wrote.
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        """How many atoms were selected."""
        return len(self.positions)



def wrapped(frame: Frame) -> Frame:
    """``frame`` with its positions moved into the cell along its periodic directions (in place).

    Every reader's frames pass through here (unwrapped ``xu yu zu`` dumps, atoms that left the box, any
    triclinic tilt), so that what is denoised, classified and written back is one periodic image of each
    atom, inside the cell ``origin + [0, 1)^3 @ cell``.

    Parameters
    ----------
    frame : Frame
        Positions (n, 3) in Angstrom.

    Returns
    -------
    Frame
        The same object.
    """
    frame.positions = wrap_positions(frame.positions, frame.cell, frame.pbc, frame.origin)
    return frame
