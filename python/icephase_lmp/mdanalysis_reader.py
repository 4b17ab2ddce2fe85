"""Reading GROMACS and other MDAnalysis formats, and MDAnalysis atom groups, into :class:`Frame` objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrajectoryError
from .file_formats import NEEDS_TOPOLOGY, check_exists
from .frame import Frame, wrapped
from .selection import Selection, empty_selection_error, values_summary

__all__ = ["frame_from_atomgroup", "open_universe", "read_universe"]


def open_universe(path: Path, top: Path | None) -> Any:
    """An MDAnalysis ``Universe`` of ``path`` (with the topology ``top``, needed for .xtc and .trr).

    Raises
    ------
    TrajectoryError
        For a missing topology, a damaged .xtc/.trr, or files MDAnalysis cannot open together.
    """
    if top is None and path.suffix.lower() in NEEDS_TOPOLOGY:
        raise TrajectoryError(
            f"{path} holds coordinates only: pass the topology of the same system with --top "
            "(a GROMACS .tpr, .gro or .pdb), e.g. --top md.tpr"
        )
    if top is not None:
        check_exists(top, "topology")
    if path.suffix.lower() in NEEDS_TOPOLOGY:
        _check_xdr_header(path)
    import MDAnalysis as mda

    files = (str(top), str(path)) if top is not None else (str(path),)
    try:
        return mda.Universe(*files)
    except (OSError, ValueError, EOFError, TypeError) as exc:
        raise TrajectoryError(
            f"MDAnalysis could not open {' with '.join(reversed(files))}: {exc}. Check that the topology "
            "and the trajectory belong to the same system"
        ) from exc


def _check_xdr_header(path: Path) -> None:
    """Open an .xtc/.trr with MDAnalysis's low-level reader first: when MDAnalysis's trajectory reader
    fails at this step, its half-built object raises again when it is deleted, which Python prints as an
    'Exception ignored ... XTCReader' trace after our message."""
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile

    opener = XTCFile if path.suffix.lower() == ".xtc" else TRRFile
    try:
        with opener(str(path)) as xdr:
            _ = xdr.n_atoms
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise TrajectoryError(
            f"{path} is not a readable GROMACS {path.suffix.lower()} file ({exc}): the file is damaged, or is "
            "another format with this extension"
        ) from None


def _mda_group(universe: Any, select: Selection, path: Path) -> Any:
    atoms = universe.atoms
    names = np.asarray(atoms.names).astype(str) if hasattr(atoms, "names") else None
    elements = np.asarray(atoms.elements).astype(str) if hasattr(atoms, "elements") else None
    types = np.asarray(atoms.types).astype(str) if hasattr(atoms, "types") else None
    available = [
        values_summary(label, values)
        for label, values in (("names", names), ("elements", elements), ("types", types))
        if values is not None
    ]

    def require(values: np.ndarray | None, label: str) -> np.ndarray:
        if values is None:
            raise TrajectoryError(f"the topology of {path} has no atom {label}; select with {'; '.join(available)}")
        return values

    if select.is_auto:
        # GROMACS .tpr files give elements (OW -> O); formats without them still name oxygens O*, e.g. OW.
        mask = elements == "O" if elements is not None else np.zeros(len(atoms), bool)
        if not mask.any() and names is not None:
            mask = np.char.startswith(names, "O")
        if not mask.any():
            raise empty_selection_error(select, str(path), available)
        return atoms[mask]
    mask = np.ones(len(atoms), dtype=bool)
    if select.element is not None:
        # Without elements, MDAnalysis types are usually element-like (PDB, GRO guessing).
        mask &= (elements if elements is not None else require(types, "elements or types")) == select.element
    if select.name is not None:
        mask &= require(names, "names") == select.name
    if select.types is not None:
        # MDAnalysis keeps types as strings; LAMMPS data topologies give "1", "2", ...
        mask &= np.isin(require(types, "types"), [str(t) for t in select.types])
    if not mask.any():
        raise empty_selection_error(select, str(path), available)
    return atoms[mask]


def read_universe(universe: Any, path: Path, select: Selection, frames: slice) -> Iterator[Frame]:
    """Yield the selected atoms of the frames ``frames`` of ``universe`` (opened from ``path``), positions not
    yet wrapped. ``select`` automatic: element ``O``, else atom names starting with ``O``."""
    group = _mda_group(universe, select, path)
    for _ in universe.trajectory[frames]:
        yield _frame_from_atomgroup(group)  # read_frames wraps


def frame_from_atomgroup(group: Any) -> Frame:
    """The atoms of an MDAnalysis ``AtomGroup`` at its universe's current timestep, as a :class:`Frame`.

    Positions (n, 3) in Angstrom (MDAnalysis's unit) wrapped into the box, as :func:`read_frames` gives
    them; no box, or a zero one, means not periodic. ``Frame.atom_ids`` are the atoms' universe indices.
    """
    return wrapped(_frame_from_atomgroup(group))


def _frame_from_atomgroup(group: Any) -> Frame:
    ts = group.universe.trajectory.ts
    dims = ts.dimensions
    has_box = dims is not None and bool(np.all(np.asarray(dims[:3]) > 0))
    step = ts.data.get("step")
    return Frame(
        positions=group.positions.astype(np.float64),
        cell=np.asarray(ts.triclinic_dimensions, dtype=np.float64) if has_box else None,
        origin=np.zeros(3),
        pbc=(True, True, True) if has_box else (False, False, False),
        index=int(ts.frame),
        timestep=int(step) if step is not None else None,
        atom_ids=group.indices.astype(np.int64),
    )

