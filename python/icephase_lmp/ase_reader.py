"""Reading extended XYZ files and ASE ``Atoms`` into :class:`Frame` objects, through ASE."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TrajectoryError
from .file_formats import open_text
from .frame import Frame, wrapped
from .selection import Selection, empty_selection_error, values_summary

__all__ = ["count_extxyz_frames", "frame_from_atoms", "read_extxyz"]


def count_extxyz_frames(path: Path) -> int:
    """Count frames by hopping over atom counts, without parsing coordinates."""
    count = 0
    with open_text(path) as handle:
        while line := handle.readline():
            if not line.strip():
                continue
            try:
                n_atoms = int(line.split()[0])
            except ValueError:
                raise TrajectoryError(
                    f"{path}: frame {count} should start with its atom count but starts with {line[:40]!r}; "
                    "the file is not (extended) XYZ or is damaged"
                ) from None
            for _ in range(n_atoms + 1):  # the comment line, then the atoms
                if not handle.readline():
                    raise TrajectoryError(
                        f"frame {count} of {path} is truncated; read the complete ones with --frames :{count}"
                    )
            count += 1
    return count


def _ase_mask(select: Selection, atoms: Any, where: str) -> np.ndarray:
    symbols = np.array(atoms.get_chemical_symbols())
    if select.is_auto:
        mask = symbols == "O"
        if not mask.any():
            raise empty_selection_error(select, where, [values_summary("elements", symbols)])
        return mask
    mask = np.ones(len(atoms), dtype=bool)
    if select.element is not None:
        mask &= symbols == select.element
    if select.name is not None:
        names = atoms.arrays.get("name", atoms.arrays.get("names"))
        if names is None:
            raise TrajectoryError(f"{where} has no per-atom 'name' array: select with --select 'element O' instead")
        mask &= np.asarray(names).astype(str) == select.name
    if select.types is not None:
        types = atoms.arrays.get("type", atoms.arrays.get("types"))
        if types is None:
            raise TrajectoryError(f"{where} has no per-atom 'type' array: select with --select 'element O' instead")
        mask &= np.isin(np.asarray(types).astype(np.int64), select.types)
    if not mask.any():
        raise empty_selection_error(select, where, [values_summary("elements", symbols)])
    return mask


def _frame_from_atoms(atoms: Any, select: Selection, index: int, where: str) -> Frame:
    mask = _ase_mask(select, atoms, where)
    cell = atoms.cell.array.astype(np.float64)
    step = atoms.info.get("timestep", atoms.info.get("step"))
    return Frame(
        positions=atoms.positions[mask].astype(np.float64),
        cell=None if not cell.any() else cell,
        origin=np.asarray(atoms.get_celldisp(), dtype=np.float64).reshape(3),
        pbc=tuple(bool(p) for p in atoms.pbc),  # type: ignore[arg-type]
        index=index,
        timestep=int(step) if isinstance(step, (int, np.integer)) else None,
        atom_ids=np.flatnonzero(mask).astype(np.int64),
    )


def read_extxyz(path: Path, select: Selection, frames: slice) -> Iterator[Frame]:
    """Yield the selected atoms of the frames ``frames`` of an extended XYZ file, positions not yet wrapped.

    ``select`` automatic: chemical symbol ``O``; ``frames``: non-negative start, positive step. ASE's parse
    errors come out as :class:`TrajectoryError` naming the file.
    """
    from ase.io import iread

    numbers = itertools.count(frames.start, frames.step)
    source = iread(str(path), index=frames, format="extxyz")
    for index, atoms in zip(numbers, _ase_errors(source, path)):
        yield _frame_from_atoms(atoms, select, index, f"frame {index} of {path}")


def _ase_errors(source: Iterable[Any], path: Path) -> Iterator[Any]:
    """Re-raise ASE's parse errors (several exception types) as one TrajectoryError naming the file."""
    iterator = iter(source)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except (ValueError, IndexError, KeyError) as exc:
            raise TrajectoryError(f"ASE could not read {path} as extended XYZ: {exc}. Check the file") from exc
        yield item



def frame_from_atoms(atoms: Any, select: Selection | str | None = None) -> Frame:
    """The oxygens of an ASE ``Atoms``, picked as for an extxyz file, as a :class:`Frame`.

    Parameters
    ----------
    atoms : ase.Atoms
        Positions in Angstrom (ASE's unit).
    select : Selection or str, optional
        A :class:`Selection` or its CLI syntax; ``None``: automatic, symbol ``O``.

    Returns
    -------
    Frame
        Positions (n, 3) wrapped into the cell; ``Frame.atom_ids`` are the oxygens' indices in ``atoms``.

    Raises
    ------
    TrajectoryError
        When the selection cannot be parsed or matches no atom.
    """
    if not isinstance(select, Selection):
        select = Selection.parse(select)
    return wrapped(_frame_from_atoms(atoms, select, 0, "the Atoms"))

