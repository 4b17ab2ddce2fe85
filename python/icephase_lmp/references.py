"""Ideal reference structures (oxygen sites only).

The built-in set is the paper's seven phases, built from GenIce2's stage-1 output: the oxygen sites of the
lattice with no hydrogen placement and no random displacement, so the same call always gives the same
structure. A user can add any other GenIce2 lattice (e.g. ``5`` for ice V, ``CS2`` for sII hydrate) or any
structure file that ASE reads, and can set the density of each reference.

Reference specs (used by the CLI and the training config) have the form ``[LABEL=]SOURCE[@DENSITY]``:
``Ih``, ``1h``, ``VII@1.78``, ``V=5``, ``sII=CS2@0.79``, ``myice=path/to/ice.cif``.
"""

from __future__ import annotations

import io
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from .errors import ReferenceStructureError
from .phases import BUILTIN_PHASES, KNOWN_PHASES, builtin_phase

#: Mass of one water molecule in g/mol: a reference's density counts one molecule per oxygen site.
WATER_MOLAR_MASS = 18.015
_AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class Reference:
    """One ideal reference phase: a periodic cell holding only oxygen sites."""

    name: str
    atoms: Atoms
    source: str

    @property
    def density(self) -> float:
        """Water density (g/cm3), one molecule per oxygen site."""
        return water_density(self.atoms)


def water_density(atoms: Atoms) -> float:
    """Density in g/cm3 of a cell of oxygen sites, one water molecule per site."""
    return water_density_of_cell(len(atoms), atoms.cell.array)


def water_density_of_cell(n_molecules: int, cell: np.ndarray) -> float:
    """Density in g/cm3 of ``n_molecules`` water molecules in ``cell`` ((3, 3) rows, Angstrom)."""
    volume_cm3 = abs(np.linalg.det(cell)) * 1e-24
    return n_molecules * WATER_MOLAR_MASS / _AVOGADRO / volume_cm3


def scaled_to_density(atoms: Atoms, density: float) -> Atoms:
    """A copy of ``atoms`` scaled isotropically (positions with the cell) to ``density`` g/cm3."""
    if not density > 0:
        raise ReferenceStructureError(f"density must be positive (g/cm3), got {density}")
    out = atoms.copy()
    factor = (water_density(atoms) / density) ** (1.0 / 3.0)
    out.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return out


def genice_cell(lattice: str) -> Atoms:
    """The oxygen sites of one unit cell of a GenIce2 lattice, at GenIce2's default density."""
    from genice2.genice import GenIce
    from genice2.plugin import Format, Lattice

    # GenIce2 logs chatty INFO lines and may print; keep the user's terminal clean.
    logging.getLogger("genice2").setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            raw = GenIce(Lattice(lattice), reshape=np.eye(3, dtype=int)).generate_ice(
                Format("raw", stage=(1,))
            )
    except (ImportError, KeyError, AttributeError, AssertionError) as exc:  # GenIce2 asserts on unknown names
        raise ReferenceStructureError(
            f"GenIce2 has no lattice named {lattice!r} ({exc}). Use a GenIce2 lattice name "
            "(e.g. 1h, 1c, 2, 3, 5, 6, 7, CS1, CS2) or a structure file ASE can read."
        ) from exc
    cell = np.asarray(raw["repcell"], dtype=float) * 10.0  # nm -> Angstrom, rows a b c
    frac = np.asarray(raw["reppositions"], dtype=float) % 1.0
    return Atoms("O" * len(frac), scaled_positions=frac, cell=cell, pbc=True)


def builtin_reference(name: str, density: float | None = None) -> Reference:
    """One of the known phases (the seven and the extended ones) by name (``Ih``) or lattice (``1h``)."""
    phase = builtin_phase(name)
    if phase is None:
        known = ", ".join(p.name for p in KNOWN_PHASES)
        raise ReferenceStructureError(f"unknown phase {name!r}: the known phases are {known}")
    return genice_reference(phase.lattice, phase.name, density)


def genice_reference(lattice: str, label: str, density: float | None = None) -> Reference:
    """GenIce2's ``lattice`` as the reference ``label``, rescaled to ``density`` (g/cm3) when given."""
    atoms = genice_cell(lattice)
    if density is not None:
        atoms = scaled_to_density(atoms, density)
    return Reference(label, atoms, f"genice2:{lattice}")


def file_reference(path: str | Path, label: str, density: float | None = None) -> Reference:
    """A reference read from any structure file ASE reads; only its oxygen atoms are kept."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise ReferenceStructureError(f"reference file {str(path)!r} does not exist")
    try:
        atoms = read(path)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise ReferenceStructureError(f"ASE cannot read reference file {str(path)!r}: {exc}") from exc
    oxygen = atoms[[s == "O" for s in atoms.get_chemical_symbols()]]
    if len(oxygen) == 0:
        raise ReferenceStructureError(f"reference file {str(path)!r} holds no O atom: icephase uses oxygen sites only")
    if not all(oxygen.pbc) or oxygen.cell.rank < 3:
        raise ReferenceStructureError(f"reference file {str(path)!r} must be a periodic crystal with a full 3D cell")
    oxygen.wrap()
    if density is not None:
        oxygen = scaled_to_density(oxygen, density)
    return Reference(label, oxygen, f"file:{path}")


def parse_reference(spec: str) -> Reference:
    """Build a reference from a spec ``[LABEL=]SOURCE[@DENSITY]`` (see the module docstring)."""
    text = spec.strip()
    label, _, source = text.rpartition("=") if "=" in text else ("", "", text)
    density: float | None = None
    if "@" in source:
        source, _, dens_text = source.rpartition("@")
        try:
            density = float(dens_text)
        except ValueError:
            raise ReferenceStructureError(
                f"reference {spec!r}: density {dens_text!r} is not a number (g/cm3), e.g. VII@1.78"
            ) from None
    source = source.strip()
    if not source:
        raise ReferenceStructureError(f"reference {spec!r} names no phase, lattice or file")
    if Path(source).is_file():
        return file_reference(source, label or Path(source).stem, density)
    phase = builtin_phase(source)
    if phase is not None:
        return genice_reference(phase.lattice, label or phase.name, density)
    return genice_reference(source, label or source, density)


def builtin_references() -> list[Reference]:
    """The paper's seven reference phases in code order (Ih, Ic, II, III, VI, VII, sI)."""
    return [genice_reference(p.lattice, p.name) for p in BUILTIN_PHASES]


def load_references(specs: list[str] | None) -> list[Reference]:
    """The reference set named by ``specs``, or the built-in seven when ``specs`` is empty."""
    if not specs:
        return builtin_references()
    refs = [parse_reference(s) for s in specs]
    names = [r.name for r in refs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ReferenceStructureError(f"reference names must be unique; repeated: {', '.join(dupes)} (use LABEL=SOURCE)")
    return refs


def supercell(atoms: Atoms, min_width: float) -> Atoms:
    """Repeat ``atoms`` so that every perpendicular width of the cell is at least ``min_width`` Angstrom.

    A cell at least twice a cutoff wide sees every neighbour within the cutoff once (minimum image).
    """
    from .geometry import perpendicular_widths

    widths = perpendicular_widths(atoms.cell.array)
    reps = np.maximum(1, np.ceil(min_width / widths)).astype(int)
    return atoms.repeat(tuple(int(r) for r in reps))
