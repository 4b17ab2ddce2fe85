"""Reading LAMMPS text dumps (``dump atom`` / ``dump custom``, optionally gzipped) into :class:`Frame` objects.

The dump is read line by line, so a multi-gigabyte dump is never loaded whole, and frames that are
skipped (``--frames``) are never split into numbers.

Why this is written here rather than read through a library. MDAnalysis (``LAMMPSDUMP``) and ASE
(``lammps-dump-text``) both read these files, and a check on every dump of ``runs/`` and on dumps made to
cover each case (scaled, unwrapped, general triclinic, gzipped, damaged) found:

- MDAnalysis keeps positions in float32 and the box as lengths and angles, so neither positions nor cell
  come back as the float64 numbers in the file;
- ASE (3.29) gives the same positions, but a tilted cell that differs in the last bits (its own form of
  the bounding-box inversion), adds no origin to scaled coordinates, prefers ``xs`` over ``xu``, reads a
  truncated last frame as a shorter frame without an error, reads a text file that is no dump as an empty
  trajectory, fails on an ``element`` column holding atom names (``OW``), on a dump without ``type`` and
  ``element`` columns and on one without boundary flags, turns types into chemical elements (type 1 is
  H), and keeps only some extra columns (``c_``, ``f_``, ``v_``, ...) and only as numbers.

Each of these is a behaviour this reader has (most are checked in ``tests/test_trajectory.py``), so it
stays; the box maths it shares with the writers is in :mod:`.lammps_box`.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .errors import TrajectoryError
from .file_formats import open_text
from .frame import Frame
from .lammps_box import BoundsStyle, cell_from_dump_bounds
from .selection import Selection, empty_selection_error, values_summary

__all__ = ["count_lammps_dump_frames", "read_lammps_dump"]

#: Position column sets in order of preference, and whether they are fractional (scaled) coordinates.
#: Wrapped x y z come first: they are what LAMMPS writes by default and need no conversion.
_POSITION_SETS: tuple[tuple[tuple[str, str, str], bool], ...] = (
    (("x", "y", "z"), False),
    (("xu", "yu", "zu"), False),
    (("xs", "ys", "zs"), True),
    (("xsu", "ysu", "zsu"), True),
)


class _Lines:
    """A line source with one line of push-back and a line counter for error messages."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        self._pushed: str | None = None
        self.number = 0

    def next(self) -> str | None:
        """The next line without its newline, or ``None`` at the end of the file."""
        if self._pushed is not None:
            line, self._pushed = self._pushed, None
            return line
        line = self._handle.readline()
        if not line:
            return None
        self.number += 1
        return line.rstrip("\r\n")

    def push_back(self, line: str) -> None:
        self._pushed = line


@dataclass
class _DumpHeader:
    timestep: int
    n_atoms: int
    cell: np.ndarray | None
    origin: np.ndarray
    pbc: tuple[bool, bool, bool]
    columns: list[str]
    first_atom_line: int


class _DumpReader:
    """Reads one LAMMPS text dump frame after another; skipped frames are never split into numbers."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self.lines = _Lines(handle)

    def _truncated(self, index: int, detail: str) -> TrajectoryError:
        keep = f"--frames :{index}" if index > 0 else "a complete dump"
        return TrajectoryError(
            f"frame {index} of {self.path} is truncated ({detail}); the file was probably cut off while "
            f"LAMMPS was still writing it. Read only the complete frames with {keep}"
        )

    def _require(self, index: int, detail: str) -> str:
        line = self.lines.next()
        if line is None:
            raise self._truncated(index, f"the file ends before {detail}")
        return line

    def read_header(self, index: int) -> _DumpHeader | None:
        """Parse the ITEM sections up to and including ``ITEM: ATOMS``; ``None`` at a clean end of file."""
        line = self.lines.next()
        while line is not None and not line.strip():
            line = self.lines.next()
        if line is None:
            return None
        if not line.startswith("ITEM: TIMESTEP"):
            raise TrajectoryError(
                f"{self.path}, line {self.lines.number}: expected 'ITEM: TIMESTEP' at the start of frame "
                f"{index} but found {line[:60]!r}. Is this a LAMMPS text dump (dump atom or dump custom)? "
                "Binary or compressed-by-LAMMPS dumps must be converted to text first"
            )
        timestep = self._parse_int(self._require(index, "the timestep value"), "timestep", index)
        n_atoms: int | None = None
        cell, origin, pbc = None, np.zeros(3), (False, False, False)
        while True:
            line = self._require(index, "its ITEM: ATOMS section")
            if not line.startswith("ITEM:"):
                raise TrajectoryError(
                    f"{self.path}, line {self.lines.number}: expected an 'ITEM:' line in frame {index}, found "
                    f"{line[:60]!r}. The frame has more data lines than its header announces; check the file"
                )
            item = line[len("ITEM:"):].strip()
            if item.startswith("NUMBER OF ATOMS"):
                n_atoms = self._parse_int(self._require(index, "the number of atoms"), "number of atoms", index)
            elif item.startswith("BOX BOUNDS"):
                bounds = [self._require(index, "the three box lines") for _ in range(3)]
                cell, origin, pbc = self._parse_box(item[len("BOX BOUNDS"):].split(), bounds, index)
            elif item.startswith("ATOMS"):
                if n_atoms is None:
                    raise TrajectoryError(
                        f"frame {index} of {self.path} has no 'ITEM: NUMBER OF ATOMS' before its atoms"
                    )
                return _DumpHeader(timestep, n_atoms, cell, origin, pbc, item.split()[1:], self.lines.number + 1)
            elif item.startswith("TIMESTEP"):
                raise self._truncated(index, "a new frame starts before its ITEM: ATOMS section")
            else:
                self._skip_unknown_item()

    def _skip_unknown_item(self) -> None:
        # Sections such as ITEM: TIME or ITEM: UNITS (dump_modify time/units yes) carry nothing we need.
        while (line := self.lines.next()) is not None:
            if line.startswith("ITEM:"):
                self.lines.push_back(line)
                return

    def _parse_int(self, line: str, what: str, index: int) -> int:
        try:
            return int(line.split()[0])
        except (ValueError, IndexError):
            raise TrajectoryError(
                f"{self.path}, line {self.lines.number}: frame {index} has {line[:40]!r} where the {what} "
                "should be an integer; the file is damaged or not a LAMMPS text dump"
            ) from None

    def _parse_box(
        self, words: list[str], lines: list[str], index: int
    ) -> tuple[np.ndarray, np.ndarray, tuple[bool, bool, bool]]:
        try:
            values = [[float(v) for v in line.split()] for line in lines]
        except ValueError:
            raise TrajectoryError(f"frame {index} of {self.path}: the BOX BOUNDS lines are not numbers") from None
        general, tilted = words[:2] == ["abc", "origin"], words[:3] == ["xy", "xz", "yz"]
        needed = 4 if general else 3 if tilted else 2
        if any(len(v) < needed for v in values):
            raise TrajectoryError(
                f"frame {index} of {self.path}: each BOX BOUNDS {' '.join(words)} line needs {needed} numbers; "
                "the file is damaged"
            )
        style: BoundsStyle = "general" if general else "tilted" if tilted else "orthogonal"
        cell, origin = cell_from_dump_bounds(values, style)
        flags = words[2:] if general else words[3:] if tilted else words
        # Very old LAMMPS versions wrote no boundary flags; LAMMPS boxes are periodic by default.
        pbc = tuple(flag == "pp" for flag in flags) if len(flags) == 3 else (True, True, True)
        return cell, origin, pbc  # type: ignore[return-value]

    def skip_atoms(self, header: _DumpHeader, index: int) -> None:
        for k in range(header.n_atoms):
            if self.lines.next() is None:
                raise self._truncated(index, f"{k} of its {header.n_atoms} atom lines are present")

    def read_atoms(self, header: _DumpHeader, index: int) -> np.ndarray:
        """The atom lines as an (n_atoms, n_columns) array of strings."""
        rows = []
        for k in range(header.n_atoms):
            line = self.lines.next()
            if line is None:
                raise self._truncated(index, f"{k} of its {header.n_atoms} atom lines are present")
            rows.append(line)
        n_columns = len(header.columns)
        tokens = " ".join(rows).split()
        if len(tokens) != header.n_atoms * n_columns:
            bad = next((k for k, r in enumerate(rows) if len(r.split()) != n_columns), 0)
            raise TrajectoryError(
                f"{self.path}, line {header.first_atom_line + bad}: frame {index} has an atom line with "
                f"{len(rows[bad].split())} values but ITEM: ATOMS names {n_columns} columns; the file is damaged "
                f"(if this is the last frame, read the complete ones with --frames :{index})"
            )
        return np.array(tokens, dtype=str).reshape(header.n_atoms, n_columns)


def _lammps_mask(select: Selection, table: np.ndarray, columns: list[str], where: str) -> np.ndarray:
    """Which rows of a dump frame are selected (all set criteria must hold)."""
    col = {name: k for k, name in enumerate(columns)}

    def column(name: str, needed_by: str) -> np.ndarray:
        if name not in col:
            raise TrajectoryError(
                f"--select '{needed_by}' needs a '{name}' column, but the dump of {where} has columns "
                f"{' '.join(columns)}. Add '{name}' to the dump command or select by another criterion"
            )
        return table[:, col[name]]

    def types_of(needed_by: str) -> np.ndarray:
        values = column("type", needed_by)  # outside the try: its TrajectoryError is a ValueError too
        try:
            return values.astype(np.int64)
        except ValueError:
            raise TrajectoryError(f"the 'type' column of {where} does not hold integers") from None

    mask = np.ones(len(table), dtype=bool)
    if select.is_auto:
        if "element" in col:
            mask = table[:, col["element"]] == "O"
        elif "type" in col:
            types = np.unique(types_of("auto"))
            if len(types) > 1:
                raise TrajectoryError(
                    f"{where} has several atom types ({', '.join(map(str, types))}) and no element column: "
                    "pass --select 'type N' for the oxygen type"
                )
        # No element and no type column: nothing tells atoms apart, so the dump must hold oxygens only.
    if select.element is not None:
        mask &= column("element", select.describe()) == select.element
    if select.name is not None:
        # A 'name' column is not standard LAMMPS; many workflows put the atom name in 'element'.
        names = table[:, col["name"]] if "name" in col else column("element", select.describe())
        mask &= names == select.name
    if select.types is not None:
        mask &= np.isin(types_of(select.describe()), select.types)
    if not mask.any():
        labelled = [name for name in ("type", "element", "name") if name in col]
        available = [values_summary(name + "s", table[:, col[name]]) for name in labelled]
        raise empty_selection_error(select, where, available)
    return mask


def _dump_positions(header: _DumpHeader, rows: np.ndarray, where: str) -> np.ndarray:
    """Cartesian positions of ``rows`` from the preferred position columns present."""
    col = {name: k for k, name in enumerate(header.columns)}
    for names, scaled in _POSITION_SETS:
        if all(n in col for n in names):
            values = rows[:, [col[n] for n in names]].astype(np.float64)
            if not scaled:
                return values
            if header.cell is None:
                raise TrajectoryError(f"{where} has scaled coordinates but no BOX BOUNDS to unscale them")
            # Scaled (lamda) coordinates are fractions of the box vectors, measured from the box origin.
            return header.origin + values @ header.cell
    raise TrajectoryError(
        f"{where} has no position columns (ITEM: ATOMS {' '.join(header.columns)}). Dump one of the sets "
        "'x y z', 'xu yu zu', 'xs ys zs' or 'xsu ysu zsu', e.g. dump 1 all custom 100 traj.lammpstrj id type x y z"
    )


def _frame_from_dump(header: _DumpHeader, table: np.ndarray, select: Selection, index: int, where: str) -> Frame:
    columns = header.columns
    if "id" in columns:
        try:
            ids = table[:, columns.index("id")].astype(np.int64)
        except ValueError:
            raise TrajectoryError(f"the 'id' column of {where} does not hold integers") from None
        # With several MPI ranks LAMMPS writes atoms in no particular order; ids give a stable one.
        order = np.argsort(ids, kind="stable")
        table, ids = table[order], ids[order]
    else:
        ids = np.arange(len(table), dtype=np.int64)
    mask = _lammps_mask(select, table, columns, where)
    return Frame(
        positions=_dump_positions(header, table[mask], where),
        cell=None if header.cell is None else header.cell.copy(),
        origin=header.origin.copy(),
        pbc=header.pbc,
        index=index,
        timestep=header.timestep,
        atom_ids=ids[mask],
        columns={name: table[mask, k] for k, name in enumerate(columns)},
    )


def read_lammps_dump(path: Path, select: Selection, frames: slice) -> Iterator[Frame]:
    """Yield the selected atoms of the frames ``frames`` of a LAMMPS text dump, positions not yet wrapped.

    Parameters
    ----------
    path : pathlib.Path
        The dump (``.gz``: gzipped).
    select : Selection
        Which atoms; automatic: the ``element`` column equal to ``O``, else the only atom type.
    frames : slice
        Non-negative start, positive step (:func:`.selection.resolve_frames`).

    Raises
    ------
    TrajectoryError
        For a file that is no text dump, a truncated or damaged frame, missing position or selection
        columns, or a selection that matches no atom (while iterating).
    """
    start, stop, step = frames.start, frames.stop, frames.step
    with open_text(path) as handle:
        reader = _DumpReader(path, handle)
        for index in itertools.count():
            if stop is not None and index >= stop:
                return
            header = reader.read_header(index)
            if header is None:
                return
            if index < start or (index - start) % step:
                reader.skip_atoms(header, index)
                continue
            table = reader.read_atoms(header, index)
            yield _frame_from_dump(header, table, select, index, f"frame {index} of {path}")


#: Bytes read at a time when counting dump frames (a module constant so tests can make it tiny).
_COUNT_CHUNK = 1 << 24


def count_lammps_dump_frames(path: Path) -> int:
    """Frames in a LAMMPS text dump (gzipped or not): its 'ITEM: TIMESTEP' markers, counted in binary chunks,
    which is much faster than parsing lines."""
    marker = b"ITEM: TIMESTEP"
    count, tail = 0, b""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as handle:
        while chunk := handle.read(_COUNT_CHUNK):
            data = tail + chunk
            count += data.count(marker)
            # Keep a tail shorter than the marker, so a marker split between chunks is counted once.
            tail = data[-(len(marker) - 1):]
    return count

