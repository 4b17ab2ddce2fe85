"""Full-atom (O + 2 H) water ice structures, built from GenIce2 hydrogen-bond networks, for TIP4P/Ice runs.

GenIce2 builds the oxygen sites (stage 1) and a proton-disordered hydrogen-bond network that obeys the ice
rules (stage 4: a directed graph in which every water donates two and accepts two hydrogen bonds). The
hydrogens are placed here, not by a GenIce2 water model: each O stays exactly on its lattice site and its two
H atoms lie in the plane of its two donated bonds, symmetric about their bisector, with the rigid TIP4P
geometry (O-H 0.9572 A, H-O-H 104.52 deg; :mod:`.tip4p_ice`).

Orthogonal lattices give an orthogonal box; others (ice II is rhombohedral) are rotated into LAMMPS's
restricted triclinic form (a along x, b in the xy plane; :mod:`.lammps_box`) with small tilts. The
structure is written as a LAMMPS data file by :mod:`.lammps_data`. Lengths are in Angstrom.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import LammpsDataError, ReferenceStructureError
from .lammps_box import reduce_tilts, restricted_triclinic
from .phases import builtin_phase
from .references import water_density_of_cell
from .tip4p_ice import TIP4P_ICE

__all__ = ["FullAtomIce", "basal_interfaces", "build_tip4p_ice", "reps_for_width"]

#: Oxygen pairs closer than this are taken as hydrogen-bonded in the checks below (ice O-O ~2.75-2.9 A).
_MAX_HBOND = 3.5
_LATTICE_HELP = (
    "Use a phase name (Ih, Ic, II, III, VI, VII, sI) or a GenIce2 lattice name (1h, 1c, 2, 3, 5, 6, 7, CS1, "
    "CS2, ...)."
)


@dataclass
class FullAtomIce:
    """A proton-disordered, ice-rule-obeying water structure in a LAMMPS box (:func:`build_tip4p_ice`)."""

    #: the GenIce2 lattice name and the phase label (the built-in phase's name, or the lattice name)
    lattice: str
    phase: str
    #: unit cells along a, b, c
    reps: tuple[int, int, int]
    #: (3, 3) box vectors as rows, LAMMPS restricted triclinic form, Angstrom
    cell: np.ndarray = field(repr=False)
    #: whether the box has tilts
    triclinic: bool
    #: (n, 3) oxygen positions inside the box, Angstrom
    oxygens: np.ndarray = field(repr=False)
    #: (n, 2, 3) the two hydrogens of each oxygen, next to it (not wrapped), Angstrom
    hydrogens: np.ndarray = field(repr=False)
    #: g/cm3
    density: float
    #: the seed of GenIce2's proton arrangement
    seed: int
    #: how the Cartesian axes were relabelled ("xyz": not at all)
    axis_order: str


def _resolve_lattice(lattice: str) -> tuple[str, str]:
    """(GenIce2 lattice name, phase label) for a built-in phase name/lattice or any GenIce2 lattice name."""
    phase = builtin_phase(lattice)
    if phase is not None:
        return phase.lattice, phase.name
    return lattice.strip(), lattice.strip()


def _genice_network(lattice: str, reps: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, Any]:
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
            f"GenIce2 cannot build lattice {lattice!r} ({type(exc).__name__}: {exc}). {_LATTICE_HELP}"
        ) from exc
    finally:
        np.random.set_state(state)
    frac = np.asarray(raw["reppositions"], dtype=float) % 1.0
    cell = np.asarray(raw["repcell"], dtype=float) * 10.0  # nm -> Angstrom, rows a b c
    return frac, cell, raw["digraph"]


def _unit_widths(lattice: str) -> np.ndarray:
    """Perpendicular widths (3,) of one GenIce2 unit cell, Angstrom."""
    from .references import genice_cell

    try:
        cell = genice_cell(lattice).cell.array
    except ReferenceStructureError as exc:
        raise LammpsDataError(
            f"GenIce2 has no lattice named {lattice!r}. {_LATTICE_HELP}"
        ) from exc
    from .geometry import perpendicular_widths

    return perpendicular_widths(cell)


def reps_for_width(lattice: str, min_width: float) -> tuple[int, int, int]:
    """Unit-cell repetitions (a, b, c) so that every perpendicular width of the box is at least ``min_width``
    (Angstrom); ``lattice`` as for :func:`build_tip4p_ice`."""
    lat, _ = _resolve_lattice(lattice)
    widths = _unit_widths(lat)
    return tuple(int(r) for r in np.maximum(1, np.ceil(min_width / widths)))  # type: ignore[return-value]


def _hydrogens(o_cart: np.ndarray, cell: np.ndarray, digraph: Any) -> np.ndarray:
    """Two H per O from the donated bonds (successors in the digraph), (n, 2, 3), unwrapped next to their O."""
    from ase.geometry import find_mic

    n = len(o_cart)
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
        # ASE searches the neighbouring images of a reduced cell, so the bond is right in skewed boxes too
        vec, dist = find_mic(o_cart[succ] - o_cart[i], cell, pbc=True)
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



def build_tip4p_ice(
    lattice: str = "1h",
    reps: tuple[int, int, int] | None = None,
    min_width: float | None = None,
    density: float | None = None,
    seed: int = 0,
    axis_order: str = "xyz",
) -> FullAtomIce:
    """A proton-disordered, ice-rule-obeying full-atom water structure of a GenIce2 lattice.

    Parameters
    ----------
    lattice : str, optional
        A built-in phase name (Ih, Ic, II, III, VI, VII, sI) or any GenIce2 lattice name.
    reps : tuple of 3 int, optional
        Unit cells along a, b, c.
    min_width : float, optional
        Without ``reps``: the smallest repetition whose every perpendicular width reaches this (Angstrom);
        with neither, one unit cell.
    density : float, optional
        g/cm3: the O sites are rescaled isotropically to it before the rigid molecules are built.
    seed : int, optional
        Picks the proton arrangement.
    axis_order : str, optional
        Relabels the Cartesian axes of an orthogonal box: "xzy" puts the lattice's y axis along z (for
        GenIce2's ice Ih that is the c axis, so the basal plane faces z).

    Returns
    -------
    FullAtomIce
        Oxygens (n, 3) inside the box, hydrogens (n, 2, 3) next to their oxygen (not wrapped).

    Raises
    ------
    LammpsDataError
        For a lattice GenIce2 cannot build, bad ``reps``, ``density`` or ``axis_order``, or a box too small
        for a minimum-image hydrogen-bond network.
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
        current = water_density_of_cell(len(frac), cell)
        cell = cell * (current / density) ** (1.0 / 3.0)
    if np.linalg.det(cell) < 0:
        raise LammpsDataError("the lattice's cell is left-handed; LAMMPS needs a right-handed box")
    new_cell, rotation = restricted_triclinic(cell)
    o_cart = frac @ cell @ rotation
    new_cell = reduce_tilts(new_cell)
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
    return FullAtomIce(
        lattice=lat, phase=label, reps=reps, cell=new_cell, triclinic=triclinic, oxygens=o_cart, hydrogens=h_cart,
        density=water_density_of_cell(len(o_cart), new_cell), seed=seed, axis_order=axis_order,
    )



def basal_interfaces(oz: np.ndarray, lz: float) -> tuple[float, float, float]:
    """Ice region (z1, z2) between molecular layers, half the box thick, and the shift dz that centres it.

    ``oz``: (n,) oxygen z coordinates and ``lz`` the box height, Angstrom; z1, z2 and dz in Angstrom too.

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
