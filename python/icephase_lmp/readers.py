"""Reading the oxygens of MD trajectories: :func:`read_frames` and :func:`count_frames`, for every format.

The format is told by the file name (:mod:`.file_formats`): LAMMPS text dumps (:mod:`.lammps_dump_reader`),
extended XYZ through ASE (:mod:`.ase_reader`), GROMACS and other MDAnalysis formats
(:mod:`.mdanalysis_reader`). Every reader yields :class:`Frame` objects holding only the selected atoms,
positions wrapped into the cell here, and every problem a user can cause is a :class:`TrajectoryError` that
says what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .ase_reader import count_extxyz_frames, read_extxyz
from .file_formats import PathLike, check_exists, input_format
from .frame import Frame, wrapped
from .lammps_dump_reader import count_lammps_dump_frames, read_lammps_dump
from .mdanalysis_reader import open_universe, read_universe
from .selection import Selection, resolve_frames

__all__ = ["count_frames", "open_frames", "read_frames"]


def read_frames(
    path: PathLike,
    top: PathLike | None = None,
    select: Selection | None = None,
    frames: slice | None = None,
) -> Iterator[Frame]:
    """Yield the selected atoms of each requested frame of ``path``.

    Argument errors (missing file, unknown format, missing topology) are raised at the call, not at
    the first ``next()``, so a caller learns about them before starting any work.

    Parameters
    ----------
    path : str or pathlib.Path
        A LAMMPS text dump (optionally gzipped), extended XYZ, or an MDAnalysis format (the format is told by
        the name); lengths in Angstrom.
    top : str or pathlib.Path, optional
        The topology for coordinate-only GROMACS files (.tpr, .gro or .pdb).
    select : Selection, optional
        Which atoms are oxygens. Default: automatic, i.e. a LAMMPS dump's ``element`` column equal to ``O``,
        else its only atom type; extxyz symbol ``O``; MDAnalysis element ``O``, else atom names starting
        with ``O``.
    frames : slice, optional
        Which frames (:func:`.selection.parse_frames`); default all, read forwards.

    Yields
    ------
    Frame
        The selected atoms, positions (n, 3) in Angstrom wrapped into the cell.

    Raises
    ------
    TrajectoryError
        For a missing or unreadable file, an unknown format, a missing topology, a selection that matches
        no atom, or a truncated frame (the last two while iterating).
    """
    path = Path(path)
    check_exists(path)
    kind = input_format(path)
    select = select or Selection()
    if kind == "lammps":
        source = read_lammps_dump(path, select, resolve_frames(frames, lambda: count_frames(path)))
    elif kind == "extxyz":
        source = read_extxyz(path, select, resolve_frames(frames, lambda: count_frames(path)))
    else:
        source, _ = _universe_frames(path, top, select, frames)
    return (wrapped(frame) for frame in source)


def open_frames(
    path: PathLike,
    top: PathLike | None = None,
    select: Selection | None = None,
    frames: slice | None = None,
) -> tuple[Iterator[Frame], int]:
    """:func:`read_frames` and :func:`count_frames` together: the frames, and how many the file holds. An
    MDAnalysis file is opened once for both (opening one reads its whole index: ~0.15 s of every
    ``icephase classify`` start-up on a GROMACS file, paid twice before)."""
    path = Path(path)
    check_exists(path)
    if input_format(path) in ("lammps", "extxyz"):
        return read_frames(path, top, select, frames), count_frames(path)
    source, n_frames = _universe_frames(path, top, select or Selection(), frames)
    return (wrapped(frame) for frame in source), n_frames


def _universe_frames(path: Path, top: PathLike | None, select: Selection, frames: slice | None
                     ) -> tuple[Iterator[Frame], int]:
    """The frames of an MDAnalysis file (not yet wrapped) and how many it holds, from one Universe."""
    universe = open_universe(path, Path(top) if top is not None else None)
    return read_universe(universe, path, select, frames or slice(None)), len(universe.trajectory)


def count_frames(path: PathLike, top: PathLike | None = None) -> int:
    """Number of frames in ``path``: a fast text scan for LAMMPS/extxyz, MDAnalysis's count otherwise.

    ``top`` as for :func:`read_frames`. Raises :class:`TrajectoryError` as :func:`read_frames` does for the file.
    """
    path = Path(path)
    check_exists(path)
    kind = input_format(path)
    if kind == "lammps":
        return count_lammps_dump_frames(path)
    if kind == "extxyz":
        return count_extxyz_frames(path)
    return len(open_universe(path, Path(top) if top is not None else None).trajectory)
