"""Which format a trajectory or label file is in, told by its name, and opening text files (gzipped or not).

Inputs: LAMMPS text dumps (``.lammpstrj``, ``.dump``, ``.lammps``, any name containing ``dump``, optionally
gzipped), extended XYZ (``.extxyz``, ``.xyz``), and MDAnalysis formats (``.xtc``, ``.trr``, ``.gro``,
``.pdb``). Label outputs: ``.csv``, a LAMMPS dump, or extended XYZ.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Literal

from .errors import TrajectoryError

__all__ = ["NEEDS_TOPOLOGY", "PathLike", "check_exists", "input_format", "open_text", "output_format"]

#: a file name as the readers and writers take it
PathLike = str | Path

_LAMMPS_SUFFIXES = (".lammpstrj", ".dump", ".lammps")
_EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
_MDA_SUFFIXES = (".xtc", ".trr", ".gro", ".pdb")
#: Coordinate-only formats: MDAnalysis needs a topology file next to them.
NEEDS_TOPOLOGY = (".xtc", ".trr")
_SUPPORTED_INPUT = (
    "LAMMPS text dump (.lammpstrj, .dump, .lammps, or a name containing 'dump'; .gz allowed), "
    "extended XYZ (.extxyz, .xyz), GROMACS/MDAnalysis (.xtc, .trr with --top; .gro, .pdb)"
)


def _is_lammps_dump_name(path: Path) -> bool:
    # LAMMPS users often name dumps "dump.water.*" with no meaningful extension.
    return path.suffix.lower() in _LAMMPS_SUFFIXES or "dump" in path.name.lower()


def input_format(path: Path) -> Literal["lammps", "extxyz", "mdanalysis"]:
    """The reader for ``path``, from its name (a ``.gz`` suffix is looked through for text formats).

    Raises
    ------
    TrajectoryError
        When the name fits no supported format; the message lists them.
    """
    plain = path.with_suffix("") if path.suffix.lower() == ".gz" else path
    suffix = plain.suffix.lower()
    if suffix in _EXTXYZ_SUFFIXES:
        return "extxyz"
    if suffix in _MDA_SUFFIXES and plain == path:
        return "mdanalysis"
    if _is_lammps_dump_name(plain):
        return "lammps"
    raise TrajectoryError(f"cannot tell the format of {path} from its name. Supported: {_SUPPORTED_INPUT}")


def output_format(path: Path) -> Literal["csv", "extxyz", "lammps"]:
    """The label writer for ``path``, from its extension (or a name containing ``dump``).

    Raises
    ------
    TrajectoryError
        For any other name; the message lists the choices.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _EXTXYZ_SUFFIXES:
        return "extxyz"
    if _is_lammps_dump_name(path):
        return "lammps"
    raise TrajectoryError(
        f"cannot tell the output format of {path} from its extension. Use .csv (a table), .lammpstrj or "
        ".dump (LAMMPS dump for OVITO) or .extxyz (extended XYZ)"
    )


def check_exists(path: Path, what: str = "trajectory") -> None:
    """Raise :class:`TrajectoryError` naming ``path`` (a ``what`` file) when it is not an existing file."""
    if not path.is_file():
        raise TrajectoryError(f"{what} file {path} does not exist (or is not a file): check the path")


def open_text(path: Path) -> IO[str]:
    """``path`` opened for reading text, through gzip when its name ends in ``.gz``."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt")
    return path.open("r")
