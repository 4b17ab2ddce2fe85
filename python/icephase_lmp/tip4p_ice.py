"""The TIP4P/Ice water model in LAMMPS: its parameters and the force-field include file.

TIP4P/Ice: Abascal, Sanz, Garcia Fernandez, Vega, J. Chem. Phys. 122, 234511 (2005). The M site is not an
atom: LAMMPS's ``*/tip4p/*`` styles place it on the fly at ``d_OM`` along the H-O-H bisector. The data
files these settings go with are written by :mod:`.lammps_data` (``units real``, ``atom_style full``,
atom type 1 = O, 2 = H, bond type 1 = O-H, angle type 1 = H-O-H).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MASS_H", "MASS_O", "TIP4P_2005", "TIP4P_ICE", "tip4p_ice_settings", "write_tip4p_ice_settings"]

#: TIP4P/Ice (Abascal, Sanz, Garcia Fernandez, Vega, J. Chem. Phys. 122, 234511 (2005)), in LAMMPS real units.
TIP4P_ICE = {
    "name": "TIP4P/Ice",
    "reference": "Abascal et al., J. Chem. Phys. 122, 234511 (2005)",
    "epsilon_OO": 0.21084,  # kcal/mol
    "sigma_OO": 3.1668,  # Angstrom
    "q_H": 0.5897,  # e
    "q_O": -1.1794,  # e; carried by the massless M site in the */tip4p/* styles
    "d_OM": 0.1577,  # Angstrom
    "r_OH": 0.9572,  # Angstrom
    "theta_HOH": 104.52,  # degrees
    "cutoff": 8.5,  # Angstrom, LJ and real-space Coulomb
}
#: TIP4P/2005 (Abascal, Vega, J. Chem. Phys. 123, 234505 (2005)): the same geometry and form, other LJ and
#: charges (melting point 250 K against TIP4P/Ice's 270 K); a second atomistic water model for benchmarks
TIP4P_2005 = {
    "name": "TIP4P/2005",
    "reference": "Abascal and Vega, J. Chem. Phys. 123, 234505 (2005)",
    "epsilon_OO": 0.18520,  # kcal/mol (93.2 K)
    "sigma_OO": 3.1589,  # Angstrom
    "q_H": 0.5564,  # e
    "q_O": -1.1128,  # e
    "d_OM": 0.1546,  # Angstrom
    "r_OH": 0.9572,  # Angstrom
    "theta_HOH": 104.52,  # degrees
    "cutoff": 8.5,  # Angstrom
}
#: atomic masses, g/mol
MASS_O = 15.9994
MASS_H = 1.008


def tip4p_ice_settings(kspace_accuracy: float = 1e-5, shake_fix_id: str = "rigid_water", model: dict = TIP4P_ICE
                       ) -> str:
    """LAMMPS commands for TIP4P/Ice (or ``model``, e.g. :data:`TIP4P_2005`) on a data file from
    :func:`.lammps_data.write_tip4p_ice_data`.

    Parameters
    ----------
    model : dict, optional
        The water model's parameters (:data:`TIP4P_ICE` or :data:`TIP4P_2005`). The data files carry
        TIP4P/Ice's charges; for another model the commands reset them (``set type ... charge``).
    kspace_accuracy : float, optional
        Relative force accuracy of ``pppm/tip4p``.
    shake_fix_id : str, optional
        The id of the ``fix shake`` that holds the molecules rigid.

    Returns
    -------
    str
        The commands, to be included after ``read_data``.
    """
    p = model
    charges = ("" if (p["q_O"], p["q_H"]) == (TIP4P_ICE["q_O"], TIP4P_ICE["q_H"])
               else f"set             type 1 charge {p['q_O']}\nset             type 2 charge {p['q_H']}\n")
    return f"""# {p['name']} force field ({p.get('reference', 'user parameters')}); written by icephase.
# Include after read_data of an icephase lammps-data file (units real, atom_style full,
# types 1 = O, 2 = H, bond type 1 = O-H, angle type 1 = H-O-H). The M site sits d_OM along the bisector.
pair_style      lj/cut/tip4p/long 1 2 1 1 {p['d_OM']} {p['cutoff']}
pair_coeff      1 1 {p['epsilon_OO']} {p['sigma_OO']}
pair_coeff      1 2 0.0 1.0
pair_coeff      2 2 0.0 1.0
pair_modify     tail yes
# stiff harmonic terms at the rigid geometry; fix shake holds them exactly
bond_style      harmonic
bond_coeff      1 450.0 {p['r_OH']}
angle_style     harmonic
angle_coeff     1 55.0 {p['theta_HOH']}
special_bonds   lj/coul 0.0 0.0 0.0
kspace_style    pppm/tip4p {kspace_accuracy:g}
neighbor        2.0 bin
neigh_modify    every 1 delay 0 check yes
fix             {shake_fix_id} all shake 1.0e-4 100 0 b 1 a 1
{charges}"""


def write_tip4p_ice_settings(path: str | Path, kspace_accuracy: float = 1e-5, model: dict = TIP4P_ICE) -> Path:
    """Write the TIP4P/Ice (or ``model``'s) include file (pair, bond, angle, kspace styles and the SHAKE fix)
    to ``path``.

    Returns ``path`` as a :class:`~pathlib.Path`; its folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tip4p_ice_settings(kspace_accuracy, model=model))
    return path
