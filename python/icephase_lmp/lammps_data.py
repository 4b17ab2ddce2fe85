"""Writing a full-atom water ice structure as a LAMMPS data file, for TIP4P/Ice runs.

The data file uses ``units real`` and ``atom_style full``: atom type 1 = O, 2 = H, bond type 1 = O-H, angle
type 1 = H-O-H, every molecule whole (image flags where it crosses the box). The structure comes from
:func:`.full_atom_ice.build_tip4p_ice` (GenIce2); :func:`.tip4p_ice.write_tip4p_ice_settings` writes the
matching force-field include file::

    ice = build_tip4p_ice("Ih", reps=(4, 4, 3))
    write_tip4p_ice_data("ice.data", ice)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .full_atom_ice import FullAtomIce
from .tip4p_ice import MASS_H, MASS_O, TIP4P_ICE

__all__ = ["LammpsDataInfo", "write_tip4p_ice_data"]


@dataclass
class LammpsDataInfo:
    """What :func:`write_tip4p_ice_data` wrote. Positions are in the box as written (Angstrom)."""

    path: str
    lattice: str
    phase: str
    reps: tuple[int, int, int]
    n_molecules: int
    n_atoms: int
    n_bonds: int
    n_angles: int
    #: LAMMPS box: lower corner and lengths along x, y, z, plus tilts (xy, xz, yz); all tilts 0 if orthogonal.
    origin: tuple[float, float, float]
    lengths: tuple[float, float, float]
    tilts: tuple[float, float, float]
    triclinic: bool
    density: float
    seed: int
    axis_order: str
    oxygen_positions: np.ndarray = field(repr=False)
    hydrogen_positions: np.ndarray = field(repr=False)

    @property
    def cell(self) -> np.ndarray:
        """Box vectors as rows (LAMMPS restricted form)."""
        lx, ly, lz = self.lengths
        xy, xz, yz = self.tilts
        return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])

    def to_dict(self) -> dict:
        """JSON-friendly summary (no positions)."""
        return {
            "path": self.path, "lattice": self.lattice, "phase": self.phase, "reps": list(self.reps),
            "n_molecules": self.n_molecules, "n_atoms": self.n_atoms, "n_bonds": self.n_bonds,
            "n_angles": self.n_angles, "origin": list(self.origin), "lengths": list(self.lengths),
            "tilts": list(self.tilts), "triclinic": self.triclinic, "density_g_cm3": self.density,
            "seed": self.seed, "axis_order": self.axis_order,
        }




def write_tip4p_ice_data(path: str | Path, ice: FullAtomIce) -> LammpsDataInfo:
    """Write a full-atom water ice structure as a LAMMPS data file (``units real``, ``atom_style full``).

    Parameters
    ----------
    path : str or pathlib.Path
        The data file; its folder is created if needed.
    ice : FullAtomIce
        From :func:`.full_atom_ice.build_tip4p_ice`; positions in Angstrom.

    Returns
    -------
    LammpsDataInfo
        What was written: counts, box, density, and the positions.
    """
    cell, oxy, hyd = ice.cell, ice.oxygens, ice.hydrogens
    inv = np.linalg.inv(cell)
    n = len(oxy)
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    lines = [
        f"LAMMPS data file: {ice.phase} (GenIce2 lattice {ice.lattice}), reps {ice.reps}, seed {ice.seed}, "
        f"{n} TIP4P/Ice molecules, {ice.density:.4f} g/cm3 (icephase lammps-data)",
        "",
        f"{3 * n} atoms", "2 atom types", f"{2 * n} bonds", "1 bond types", f"{n} angles", "1 angle types",
        "",
        f"0.0 {lx:.10f} xlo xhi", f"0.0 {ly:.10f} ylo yhi", f"0.0 {lz:.10f} zlo zhi",
    ]
    if ice.triclinic:
        lines.append(f"{xy:.10f} {xz:.10f} {yz:.10f} xy xz yz")
    lines += ["", "Masses", "", f"1 {MASS_O}  # O", f"2 {MASS_H}  # H", "", "Atoms  # full", ""]
    q_o, q_h = TIP4P_ICE["q_O"], TIP4P_ICE["q_H"]
    for i in range(n):
        mol = i + 1
        for k, (pos, typ, q) in enumerate(((oxy[i], 1, q_o), (hyd[i, 0], 2, q_h), (hyd[i, 1], 2, q_h))):
            img = np.floor(pos @ inv + 1e-12).astype(int)
            p = pos - img @ cell
            lines.append(f"{3 * i + k + 1} {mol} {typ} {q:.4f} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} "
                         f"{img[0]} {img[1]} {img[2]}")
    lines += ["", "Bonds", ""]
    for i in range(n):
        lines.append(f"{2 * i + 1} 1 {3 * i + 1} {3 * i + 2}")
        lines.append(f"{2 * i + 2} 1 {3 * i + 1} {3 * i + 3}")
    lines += ["", "Angles", ""]
    for i in range(n):
        lines.append(f"{i + 1} 1 {3 * i + 2} {3 * i + 1} {3 * i + 3}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return LammpsDataInfo(
        path=str(path), lattice=ice.lattice, phase=ice.phase, reps=ice.reps, n_molecules=n, n_atoms=3 * n,
        n_bonds=2 * n, n_angles=n, origin=(0.0, 0.0, 0.0), lengths=(float(lx), float(ly), float(lz)),
        tilts=(float(xy), float(xz), float(yz)), triclinic=ice.triclinic, density=float(ice.density),
        seed=ice.seed, axis_order=ice.axis_order, oxygen_positions=oxy, hydrogen_positions=hyd,
    )

