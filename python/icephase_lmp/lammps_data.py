"""Full-atom (O + 2 H) water ice structures as LAMMPS data files, for TIP4P/Ice runs.

GenIce2 builds the oxygen sites (stage 1) and a proton-disordered hydrogen-bond network that obeys the ice
rules (stage 4: a directed graph in which every water donates two and accepts two hydrogen bonds). The
hydrogens are placed here, not by a GenIce2 water model: each O stays exactly on its lattice site and its two
H atoms lie in the plane of its two donated bonds, symmetric about their bisector, with the rigid TIP4P
geometry (O-H 0.9572 A, H-O-H 104.52 deg). The M site of TIP4P/Ice is not an atom: LAMMPS's ``*/tip4p/*``
styles place it on the fly at ``d_OM`` = 0.1577 A along the H-O-H bisector.

The data file uses ``units real`` and ``atom_style full``: atom type 1 = O, 2 = H, bond type 1 = O-H, angle
type 1 = H-O-H. Orthogonal lattices give an orthogonal box; others (ice II is rhombohedral) are rotated into
LAMMPS's restricted triclinic form (a along x, b in the xy plane) with tilts reduced to at most half a box
length. :func:`write_tip4p_ice_settings` writes the matching force-field include file.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import LammpsDataError, ReferenceStructureError
from .phases import builtin_phase
from .references import WATER_MOLAR_MASS, _AVOGADRO

#: TIP4P/Ice (Abascal, Sanz, Garcia Fernandez, Vega, J. Chem. Phys. 122, 234511 (2005)), in LAMMPS real units.
TIP4P_ICE = {
    "epsilon_OO": 0.21084,  # kcal/mol
    "sigma_OO": 3.1668,  # Angstrom
    "q_H": 0.5897,  # e
    "q_O": -1.1794,  # e; carried by the massless M site in the */tip4p/* styles
    "d_OM": 0.1577,  # Angstrom
    "r_OH": 0.9572,  # Angstrom
    "theta_HOH": 104.52,  # degrees
    "cutoff": 8.5,  # Angstrom, LJ and real-space Coulomb
}
MASS_O = 15.9994
MASS_H = 1.008

#: Oxygen pairs closer than this are taken as hydrogen-bonded in the checks below (ice O-O ~2.75-2.9 A).
_MAX_HBOND = 3.5
_IMAGES = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)


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


# --------------------------------------------------------------------------------------------- structure
def _resolve_lattice(lattice: str) -> tuple[str, str]:
    """(GenIce2 lattice name, phase label) for a built-in phase name/lattice or any GenIce2 lattice name."""
    phase = builtin_phase(lattice)
    if phase is not None:
        return phase.lattice, phase.name
    return lattice.strip(), lattice.strip()


def _genice_network(lattice: str, reps: tuple[int, int, int], seed: int):
    """Oxygen fractional positions, cell (rows, Angstrom) and directed H-bond graph of a GenIce2 supercell."""
    from genice2.genice import GenIce
    from genice2.plugin import Format, Lattice

    for name in ("genice2", "genice_core", "genice_core.compat"):
        logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.ERROR))
    state = np.random.get_state()  # GenIce2 / genice_core draw from numpy's global generator
    np.random.seed(seed)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            raw = GenIce(Lattice(lattice), reshape=np.diag(reps)).generate_ice(Format("raw", stage=(1, 4)))
    except (ImportError, KeyError, AttributeError, AssertionError, ModuleNotFoundError) as exc:
        raise LammpsDataError(
            f"GenIce2 cannot build lattice {lattice!r} ({type(exc).__name__}: {exc}). Use a phase name "
            "(Ih, Ic, II, III, VI, VII, sI) or a GenIce2 lattice name (1h, 1c, 2, 3, 5, 6, 7, CS1, CS2, ...)."
        ) from exc
    finally:
        np.random.set_state(state)
    frac = np.asarray(raw["reppositions"], dtype=float) % 1.0
    cell = np.asarray(raw["repcell"], dtype=float) * 10.0  # nm -> Angstrom, rows a b c
    return frac, cell, raw["digraph"]


def _unit_widths(lattice: str) -> np.ndarray:
    from .references import genice_cell

    try:
        cell = genice_cell(lattice).cell.array
    except ReferenceStructureError as exc:
        raise LammpsDataError(
            f"GenIce2 has no lattice named {lattice!r}. Use a phase name (Ih, Ic, II, III, VI, VII, sI) or a "
            "GenIce2 lattice name (1h, 1c, 2, 3, 5, 6, 7, CS1, CS2, ...)."
        ) from exc
    from .geometry import perpendicular_widths

    return perpendicular_widths(cell)


def reps_for_width(lattice: str, min_width: float) -> tuple[int, int, int]:
    """Unit-cell repetitions so that every perpendicular width of the box is at least ``min_width`` A."""
    lat, _ = _resolve_lattice(lattice)
    widths = _unit_widths(lat)
    return tuple(int(r) for r in np.maximum(1, np.ceil(min_width / widths)))  # type: ignore[return-value]


def _hydrogens(o_cart: np.ndarray, cell: np.ndarray, digraph) -> np.ndarray:
    """Two H per O from the donated bonds (successors in the digraph), (n, 2, 3), unwrapped next to their O."""
    n = len(o_cart)
    inv = np.linalg.inv(cell)
    half = np.radians(TIP4P_ICE["theta_HOH"]) / 2.0
    r_oh = TIP4P_ICE["r_OH"]
    out = np.empty((n, 2, 3))
    for i in range(n):
        succ = list(digraph.successors(i))
        if len(succ) != 2 or digraph.in_degree(i) != 2:
            raise LammpsDataError(
                f"water {i} donates {len(succ)} and accepts {digraph.in_degree(i)} hydrogen bonds: the "
                "network breaks the ice rules (2 and 2), so no water molecule can be placed there"
            )
        vec = o_cart[succ] - o_cart[i]
        vec -= np.round(vec @ inv) @ cell
        # nearest image among the 27 neighbouring cells (robust in skewed boxes)
        cand = vec[:, None, :] + _IMAGES @ cell
        best = np.argmin(np.einsum("ijk,ijk->ij", cand, cand), axis=1)
        vec = cand[np.arange(2), best]
        dist = np.linalg.norm(vec, axis=1)
        if np.any(dist > _MAX_HBOND):
            raise LammpsDataError(
                f"a hydrogen bond of water {i} is {dist.max():.2f} A long: the box is too small for a "
                "minimum-image network; use more repetitions (--reps or --min-width)"
            )
        u, v = vec[0] / dist[0], vec[1] / dist[1]
        bis = u + v
        bis /= np.linalg.norm(bis)
        perp = u - v
        perp /= np.linalg.norm(perp)
        out[i, 0] = o_cart[i] + r_oh * (np.cos(half) * bis + np.sin(half) * perp)  # toward succ[0]
        out[i, 1] = o_cart[i] + r_oh * (np.cos(half) * bis - np.sin(half) * perp)  # toward succ[1]
    return out


def _lammps_cell(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (cart_new = cart_old @ R) and the restricted-triclinic cell (rows) of a general cell."""
    a, b, c = cell
    lx = np.linalg.norm(a)
    xy = b @ a / lx
    ly = np.sqrt(b @ b - xy**2)
    xz = c @ a / lx
    yz = (b @ c - xy * xz) / ly
    lz = np.sqrt(c @ c - xz**2 - yz**2)
    new = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    if np.linalg.det(cell) < 0:
        raise LammpsDataError("the lattice's cell is left-handed; LAMMPS needs a right-handed box")
    rot = np.linalg.inv(cell) @ new  # maps old Cartesian rows to new Cartesian rows
    return rot, new


def _reduce_tilts(cell: np.ndarray) -> np.ndarray:
    """Same lattice with small tilts: b + i a and c + i a + j b chosen to minimise LAMMPS's skew measures.

    LAMMPS warns ("Triclinic box skew is large") when |xy|/ly > 0.5 or (|xz| + |yz|)/lz > 0.5.
    """
    a, b, c = (row.copy() for row in cell)
    b = b - np.round(b[0] / a[0]) * a
    shifts = [(i, j) for i in range(-3, 4) for j in range(-3, 4)]
    c = min((c + i * a + j * b for i, j in shifts), key=lambda v: (abs(v[0]) + abs(v[1]), abs(v[1])))
    return np.array([a, b, c])


def build_tip4p_ice(
    lattice: str = "1h",
    reps: tuple[int, int, int] | None = None,
    min_width: float | None = None,
    density: float | None = None,
    seed: int = 0,
    axis_order: str = "xyz",
) -> dict:
    """The water structure as arrays: ``cell`` (LAMMPS rows), ``oxygens`` (n, 3), ``hydrogens`` (n, 2, 3).

    ``axis_order`` relabels the Cartesian axes of an orthogonal box: "xzy" puts the lattice's y axis along z
    (for GenIce2's ice Ih that is the c axis, so the basal plane faces z). Hydrogens are not wrapped.
    """
    lat, label = _resolve_lattice(lattice)
    if reps is None:
        reps = reps_for_width(lat, min_width if min_width else 0.0)
    reps = tuple(int(r) for r in reps)  # type: ignore[assignment]
    if len(reps) != 3 or min(reps) < 1:
        raise LammpsDataError(f"reps must be three positive integers, got {reps}")
    if sorted(axis_order) != ["x", "y", "z"]:
        raise LammpsDataError(f"axis_order must be a permutation of 'xyz', got {axis_order!r}")
    frac, cell, digraph = _genice_network(lat, reps, seed)  # type: ignore[arg-type]
    if density is not None:
        if not density > 0:
            raise LammpsDataError(f"density must be positive (g/cm3), got {density}")
        current = len(frac) * WATER_MOLAR_MASS / _AVOGADRO / (abs(np.linalg.det(cell)) * 1e-24)
        cell = cell * (current / density) ** (1.0 / 3.0)
    rot, new_cell = _lammps_cell(cell)
    o_cart = frac @ cell @ rot
    new_cell = _reduce_tilts(new_cell)
    h_cart = _hydrogens(o_cart, new_cell, digraph)
    triclinic = bool(np.any(np.abs(new_cell[np.tril_indices(3, -1)]) > 1e-8))
    if axis_order != "xyz":
        if triclinic:
            raise LammpsDataError(f"axis_order applies to orthogonal boxes only; {label} needs a triclinic box")
        perm = ["xyz".index(ch) for ch in axis_order]  # new axis k takes old axis perm[k]
        new_cell = np.diag(np.diag(new_cell)[perm])
        o_cart = o_cart[:, perm]
        h_cart = h_cart[:, :, perm]
    else:
        new_cell[np.abs(new_cell) < 1e-10] = 0.0
    # put every O in the box; carry its H along so molecules stay whole
    inv = np.linalg.inv(new_cell)
    shift = -np.floor(o_cart @ inv) @ new_cell
    o_cart = o_cart + shift
    h_cart = h_cart + shift[:, None, :]
    dens = len(o_cart) * WATER_MOLAR_MASS / _AVOGADRO / (abs(np.linalg.det(new_cell)) * 1e-24)
    return {"lattice": lat, "phase": label, "reps": reps, "cell": new_cell, "triclinic": triclinic,
            "oxygens": o_cart, "hydrogens": h_cart, "density": dens, "seed": seed, "axis_order": axis_order}


# ----------------------------------------------------------------------------------------------- writers
def write_tip4p_ice_data(
    path: str | Path,
    lattice: str = "1h",
    reps: tuple[int, int, int] | None = None,
    min_width: float | None = None,
    density: float | None = None,
    seed: int = 0,
    axis_order: str = "xyz",
) -> LammpsDataInfo:
    """Write a proton-disordered, ice-rule-obeying water structure as a LAMMPS data file (real, full).

    Give ``reps`` (unit cells along a, b, c) or ``min_width`` (Angstrom; the smallest repetition whose every
    perpendicular width reaches it); with neither, one unit cell. ``density`` (g/cm3) rescales the O sites
    isotropically before the rigid molecules are built; ``seed`` picks the proton arrangement.
    """
    s = build_tip4p_ice(lattice, reps, min_width, density, seed, axis_order)
    cell, oxy, hyd = s["cell"], s["oxygens"], s["hydrogens"]
    inv = np.linalg.inv(cell)
    n = len(oxy)
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    lines = [
        f"LAMMPS data file: {s['phase']} (GenIce2 lattice {s['lattice']}), reps {s['reps']}, seed {seed}, "
        f"{n} TIP4P/Ice molecules, {s['density']:.4f} g/cm3 (icephase lammps-data)",
        "",
        f"{3 * n} atoms", "2 atom types", f"{2 * n} bonds", "1 bond types", f"{n} angles", "1 angle types",
        "",
        f"0.0 {lx:.10f} xlo xhi", f"0.0 {ly:.10f} ylo yhi", f"0.0 {lz:.10f} zlo zhi",
    ]
    if s["triclinic"]:
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
        path=str(path), lattice=s["lattice"], phase=s["phase"], reps=s["reps"], n_molecules=n, n_atoms=3 * n,
        n_bonds=2 * n, n_angles=n, origin=(0.0, 0.0, 0.0), lengths=(float(lx), float(ly), float(lz)),
        tilts=(float(xy), float(xz), float(yz)), triclinic=s["triclinic"], density=float(s["density"]),
        seed=seed, axis_order=axis_order, oxygen_positions=oxy, hydrogen_positions=hyd,
    )


def tip4p_ice_settings(kspace_accuracy: float = 1e-5, shake_fix_id: str = "rigid_water") -> str:
    """LAMMPS commands for TIP4P/Ice on a data file from :func:`write_tip4p_ice_data` (after read_data)."""
    p = TIP4P_ICE
    return f"""# TIP4P/Ice force field (Abascal et al., J. Chem. Phys. 122, 234511 (2005)); written by icephase.
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
"""


def write_tip4p_ice_settings(path: str | Path, kspace_accuracy: float = 1e-5) -> Path:
    """Write the TIP4P/Ice include file (pair, bond, angle, kspace styles and the SHAKE fix) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tip4p_ice_settings(kspace_accuracy))
    return path


# ---------------------------------------------------------------------------------------------------- CLI
def basal_interfaces(oz: np.ndarray, lz: float) -> tuple[float, float, float]:
    """Ice region (z1, z2) between molecular layers, half the box thick, and the shift dz that centres it.

    Boundaries are midpoints of the widest gaps between O layers (between basal bilayers), the first
    nearest to a quarter of the box; the second is half a box further (also a gap for whole unit cells).
    """
    z = np.sort(oz % lz)
    gaps = np.diff(np.concatenate([z, [z[0] + lz]]))
    big = gaps > 0.5 * gaps.max()
    mids = ((z + gaps / 2.0) % lz)[big]
    z1 = float(mids[np.argmin(np.abs(mids - 0.25 * lz))])
    z2_target = z1 + 0.5 * lz
    z2 = float(mids[np.argmin(np.abs(mids - z2_target))])
    if abs(z2 - z2_target) > 0.3:
        raise LammpsDataError(f"no layer gap half a box above z={z1:.2f} A (nearest {z2:.2f}); use whole unit cells")
    dz = 0.5 * lz - 0.5 * (z1 + z2)
    return z1 + dz, z2 + dz, dz
