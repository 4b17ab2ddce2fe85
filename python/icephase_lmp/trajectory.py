"""Reading oxygen positions from MD trajectories, and writing per-atom phase labels.

Three families of input, chosen by file name:

* LAMMPS text dumps (``.lammpstrj``, ``.dump``, ``.lammps``, any name containing ``dump``, optionally
  gzipped) are parsed here, line by line, so a multi-gigabyte dump is never loaded whole.
* extended XYZ (``.extxyz``, ``.xyz``) is read through ASE.
* GROMACS and other MDAnalysis formats (``.xtc``, ``.trr``, ``.gro``, ``.pdb``) are read through
  MDAnalysis, with the topology given separately (``--top``) where the coordinate file has none.

Every reader yields :class:`Frame` objects holding only the selected (oxygen) atoms, and every problem
a user can cause is reported as a :class:`TrajectoryError` that says what is wrong and how to fix it.

Labels go out as CSV, as a LAMMPS dump (for OVITO), or as extended XYZ; see :func:`open_label_writer`.
"""

from __future__ import annotations

import csv
import gzip
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from .errors import TrajectoryError
from .geometry import wrap_positions

__all__ = [
    "Frame",
    "LabelWriter",
    "Selection",
    "count_frames",
    "frame_from_atomgroup",
    "frame_from_atoms",
    "open_label_writer",
    "parse_frames",
    "partial_path",
    "read_frames",
]

PathLike = str | Path

_LAMMPS_SUFFIXES = (".lammpstrj", ".dump", ".lammps")
_EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
_MDA_SUFFIXES = (".xtc", ".trr", ".gro", ".pdb")
#: Coordinate-only formats: MDAnalysis needs a topology file next to them.
_NEEDS_TOPOLOGY = (".xtc", ".trr")
_SUPPORTED_INPUT = (
    "LAMMPS text dump (.lammpstrj, .dump, .lammps, or a name containing 'dump'; .gz allowed), "
    "extended XYZ (.extxyz, .xyz), GROMACS/MDAnalysis (.xtc, .trr with --top; .gro, .pdb)"
)


# ------------------------------------------------------------------------------------------ data types
@dataclass
class Frame:
    """The selected atoms of one trajectory frame.

    Attributes
    ----------
    positions : numpy.ndarray, shape (n, 3)
        Positions of the ``n`` selected atoms, Angstrom, wrapped into the cell along its periodic directions.
    cell : numpy.ndarray, shape (3, 3), or None
        Box vectors as rows, Angstrom, in the LAMMPS convention (a along x, b in the xy plane) when the file
        describes the box that way; ``None``: no box.
    origin : numpy.ndarray, shape (3,)
        The box corner (LAMMPS xlo, ylo, zlo), Angstrom; it only matters for writing the box back, since
        periodic images do not depend on it.
    pbc : tuple of 3 bool
        Periodicity along each cell vector.
    index : int
        The frame's position in the file (0-based).
    timestep : int or None
        The MD timestep, where the file stores one.
    atom_ids : numpy.ndarray of int64, shape (n,)
        The atoms' ids in the file (LAMMPS ids, MDAnalysis or ASE indices).
    columns : dict of str to numpy.ndarray, shape (n,)
        Every other per-atom column of a LAMMPS dump, as text.
    """

    positions: np.ndarray
    cell: np.ndarray | None
    origin: np.ndarray
    pbc: tuple[bool, bool, bool]
    index: int
    timestep: int | None
    atom_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: every other per-atom column of a LAMMPS dump as text (e.g. "c_ice[1]"), selected atoms only;
    #: e.g. ``frame.columns["c_ice[1]"].astype(float)`` gives what `compute icephase` wrote.
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        """How many atoms were selected."""
        return len(self.positions)


@dataclass(frozen=True)
class Selection:
    """Which atoms are the water oxygens. Unset fields do not filter; set fields must all match.

    All fields unset means *automatic*: each reader picks the oxygens by the best evidence its format
    offers (see :func:`read_frames`).
    """

    element: str | None = None
    name: str | None = None
    types: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str | None) -> Selection:
        """Parse the CLI syntax ``"element O"``, ``"name OW"``, ``"type 1"`` or ``"type 1 3"``.

        ``None``, ``""`` and ``"auto"`` give the automatic selection.
        """
        if text is None or not text.strip() or text.strip().lower() == "auto":
            return cls()
        words = text.split()
        keyword, values = words[0].lower(), words[1:]
        if keyword == "element" and len(values) == 1:
            return cls(element=values[0])
        if keyword == "name" and len(values) == 1:
            return cls(name=values[0])
        if keyword in ("type", "types") and values:
            try:
                return cls(types=tuple(int(v) for v in values))
            except ValueError:
                pass
        raise TrajectoryError(
            f"cannot understand the selection {text!r}. Accepted forms: 'element O', 'name OW', "
            "'type 1' or 'type 1 3' (LAMMPS atom types, integers), or leave --select out for automatic "
            "oxygen detection"
        )

    @property
    def is_auto(self) -> bool:
        """True when no field is set: each reader finds the oxygens itself."""
        return self.element is None and self.name is None and self.types is None

    def describe(self) -> str:
        """The selection in the CLI syntax that :meth:`parse` reads."""
        parts = []
        if self.element is not None:
            parts.append(f"element {self.element}")
        if self.name is not None:
            parts.append(f"name {self.name}")
        if self.types is not None:
            parts.append("type " + " ".join(str(t) for t in self.types))
        return " and ".join(parts) or "automatic"


def parse_frames(text: str | None) -> slice:
    """Parse ``--frames``: ``"START:STOP[:STEP]"`` as in Python slicing, ``"5"`` for frame 5 alone.

    ``None`` or ``""`` means every frame. Negative numbers count from the end, as in Python.

    Returns
    -------
    slice
        The frames to read, for :func:`read_frames`.

    Raises
    ------
    TrajectoryError
        When ``text`` is none of these forms, or its step is not positive.
    """
    if text is None or not text.strip():
        return slice(None)
    help_text = "use START:STOP[:STEP] as in Python slicing (e.g. '0:10', '::5', '-1'), or one frame number"
    parts = text.strip().split(":")
    try:
        numbers = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise TrajectoryError(f"cannot understand --frames {text!r}: {help_text}") from None
    if len(numbers) == 1:
        (single,) = numbers
        if single is None:
            raise TrajectoryError(f"cannot understand --frames {text!r}: {help_text}")
        # "-1" must mean the last frame, which slice(-1, 0) would not.
        return slice(single, single + 1 if single != -1 else None)
    if len(numbers) > 3:
        raise TrajectoryError(f"cannot understand --frames {text!r}: {help_text}")
    frames = slice(*numbers)
    if frames.step is not None and frames.step <= 0:
        raise TrajectoryError(f"--frames {text!r}: the step must be a positive integer (frames are read forwards)")
    return frames


# ---------------------------------------------------------------------------------- format detection
def _strip_gz(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() == ".gz" else path


def _input_format(path: Path) -> str:
    """'lammps', 'extxyz' or 'mdanalysis', from the file name."""
    plain = _strip_gz(path)
    suffix = plain.suffix.lower()
    if suffix in _LAMMPS_SUFFIXES:
        return "lammps"
    if suffix in _EXTXYZ_SUFFIXES:
        return "extxyz"
    if suffix in _MDA_SUFFIXES and plain == path:
        return "mdanalysis"
    # LAMMPS users often name dumps "dump.water.*" with no meaningful extension.
    if "dump" in plain.name.lower():
        return "lammps"
    raise TrajectoryError(f"cannot tell the format of {path} from its name. Supported: {_SUPPORTED_INPUT}")


def _check_exists(path: Path, what: str = "trajectory") -> None:
    if not path.is_file():
        raise TrajectoryError(f"{what} file {path} does not exist (or is not a file): check the path")


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt")
    return path.open("r")


def _resolve_frames(frames: slice | None, total: Any) -> slice:
    """A slice with non-negative start/stop and a positive step.

    ``total`` is a callable giving the frame count; it is only called when a negative bound needs it,
    because counting frames means reading the whole file for text formats.
    """
    frames = frames or slice(None)
    if frames.step is not None and frames.step <= 0:
        raise TrajectoryError("frames must be read forwards: use a positive step")
    if (frames.start or 0) < 0 or (frames.stop is not None and frames.stop < 0):
        start, stop, step = frames.indices(total())
        return slice(start, stop, step)
    return slice(frames.start or 0, frames.stop, frames.step or 1)


def _values_summary(label: str, values: np.ndarray) -> str:
    unique = [str(v) for v in np.unique(values) if str(v)]  # blank entries (e.g. virtual sites) say nothing
    shown = ", ".join(unique[:20]) + (f", ... ({len(unique)} in all)" if len(unique) > 20 else "")
    return f"{label}: {shown}"


def _empty_selection_error(select: Selection, where: str, available: Sequence[str]) -> TrajectoryError:
    has = "; ".join(available) if available else "no names, types or elements"
    what = "the automatic oxygen selection" if select.is_auto else f"the selection '{select.describe()}'"
    return TrajectoryError(
        f"{what} matched no atom in {where}. The file has {has}. "
        "Pass --select with one of these (e.g. --select 'element O', --select 'name OW' or --select 'type 1')"
    )


# ------------------------------------------------------------------------------------------ public API
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
        Which frames (:func:`parse_frames`); default all, read forwards.

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
    _check_exists(path)
    kind = _input_format(path)
    select = select or Selection()
    top_path = Path(top) if top is not None else None
    if kind == "lammps":
        wanted = _resolve_frames(frames, lambda: count_frames(path))
        source = _read_lammps(path, select, wanted)
    elif kind == "extxyz":
        wanted = _resolve_frames(frames, lambda: count_frames(path))
        source = _read_extxyz(path, select, wanted)
    else:
        universe = _open_universe(path, top_path)
        source = _read_mdanalysis(universe, path, select, frames or slice(None))
    return (_wrapped(frame) for frame in source)


def _wrapped(frame: Frame) -> Frame:
    """Every reader's frames pass through here: positions moved into the cell along its periodic
    directions (unwrapped ``xu yu zu`` dumps, atoms that left the box, any triclinic tilt), so that what is
    denoised, classified and written back is one periodic image of each atom, inside the cell."""
    frame.positions = wrap_positions(frame.positions, frame.cell, frame.pbc, frame.origin)
    return frame


def count_frames(path: PathLike, top: PathLike | None = None) -> int:
    """Number of frames in ``path``: a fast text scan for LAMMPS/extxyz, MDAnalysis's count otherwise.

    ``top`` as for :func:`read_frames`. Raises :class:`TrajectoryError` as :func:`read_frames` does for the file.
    """
    path = Path(path)
    _check_exists(path)
    kind = _input_format(path)
    if kind == "lammps":
        return _count_lammps(path)
    if kind == "extxyz":
        return _count_extxyz(path)
    return len(_open_universe(path, Path(top) if top is not None else None).trajectory)


# ------------------------------------------------------------------------------------ LAMMPS text dump
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
        if general:
            cell, origin = _general_triclinic_box(values)
            flags = words[2:]
        elif tilted:
            cell, origin = _triclinic_box(values)
            flags = words[3:]
        else:
            cell, origin = _orthogonal_box(values)
            flags = words
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


def _orthogonal_box(values: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([v[0] for v in values])
    hi = np.array([v[1] for v in values])
    return np.diag(hi - lo), lo


def _triclinic_box(values: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Undo the bounding-box form LAMMPS writes for triclinic boxes (see the LAMMPS dump doc page).

    A dump stores the bounds of the tilted box, e.g. ``xlo_bound = xlo + min(0, xy, xz, xy+xz)``, so the
    real xlo/xhi/ylo/yhi are recovered by subtracting the same extremes.
    """
    (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo, zhi, yz) = (v[:3] for v in values)
    xlo = xlo_b - min(0.0, xy, xz, xy + xz)
    xhi = xhi_b - max(0.0, xy, xz, xy + xz)
    ylo = ylo_b - min(0.0, yz)
    yhi = yhi_b - max(0.0, yz)
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    return cell, np.array([xlo, ylo, zlo])


def _general_triclinic_box(values: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """LAMMPS >= 2024 'abc origin' boxes: each line is one box vector followed by one origin component."""
    cell = np.array([v[:3] for v in values])
    return cell, np.array([v[3] for v in values])


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
        try:
            return column("type", needed_by).astype(np.int64)
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
        available = [_values_summary(name + "s", table[:, col[name]]) for name in labelled]
        raise _empty_selection_error(select, where, available)
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


def _read_lammps(path: Path, select: Selection, frames: slice) -> Iterator[Frame]:
    start, stop, step = frames.start, frames.stop, frames.step
    with _open_text(path) as handle:
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


def _count_lammps(path: Path) -> int:
    """Count 'ITEM: TIMESTEP' markers in binary chunks: much faster than parsing lines."""
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


# ---------------------------------------------------------------------------------------- extended XYZ
def _count_extxyz(path: Path) -> int:
    """Count frames by hopping over atom counts, without parsing coordinates."""
    count = 0
    with _open_text(path) as handle:
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
            raise _empty_selection_error(select, where, [_values_summary("elements", symbols)])
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
        raise _empty_selection_error(select, where, [_values_summary("elements", symbols)])
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


def _read_extxyz(path: Path, select: Selection, frames: slice) -> Iterator[Frame]:
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


# ----------------------------------------------------------------------------------------- MDAnalysis
def _open_universe(path: Path, top: Path | None) -> Any:
    if top is None and path.suffix.lower() in _NEEDS_TOPOLOGY:
        raise TrajectoryError(
            f"{path} holds coordinates only: pass the topology of the same system with --top "
            "(a GROMACS .tpr, .gro or .pdb), e.g. --top md.tpr"
        )
    if top is not None:
        _check_exists(top, "topology")
    if path.suffix.lower() in _NEEDS_TOPOLOGY:
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
        _values_summary(label, values)
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
            raise _empty_selection_error(select, str(path), available)
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
        raise _empty_selection_error(select, str(path), available)
    return atoms[mask]


def _read_mdanalysis(universe: Any, path: Path, select: Selection, frames: slice) -> Iterator[Frame]:
    group = _mda_group(universe, select, path)
    for _ in universe.trajectory[frames]:
        yield _frame_from_atomgroup(group)  # read_frames wraps


def frame_from_atomgroup(group: Any) -> Frame:
    """The atoms of an MDAnalysis ``AtomGroup`` at its universe's current timestep, as a :class:`Frame`.

    Positions (n, 3) in Angstrom (MDAnalysis's unit) wrapped into the box, as :func:`read_frames` gives
    them; no box, or a zero one, means not periodic. ``Frame.atom_ids`` are the atoms' universe indices.
    """
    return _wrapped(_frame_from_atomgroup(group))


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
    return _wrapped(_frame_from_atoms(atoms, select, 0, "the Atoms"))


# ---------------------------------------------------------------------------------------------- writers
def partial_path(path: PathLike) -> Path:
    """Where a label writer puts its frames until it finishes: beside the output, so that the final
    rename stays on one file system and is atomic."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@dataclass
class _Rows:
    """One frame's checked per-atom arrays, as every label writer writes them."""

    #: (n, 3) positions to write, Angstrom
    positions: np.ndarray
    #: (n,) phase names, from the writer's code table
    phases: list[str]
    #: (n,) int64 phase codes
    codes: np.ndarray
    #: (n,) float64 distances to the nearest reference environment
    distances: np.ndarray
    #: (n,) int64 ice cluster ids (1 = largest, 0 = not ice)
    clusters: np.ndarray


class LabelWriter:
    """Writes per-atom labels frame by frame; a context manager that closes its file on exit.

    The output is written to ``<out>.partial`` (opened at construction, so a bad path fails before any
    work) and renamed to ``<out>`` by ``close()``. A run that fails (``__exit__`` with an exception, or
    ``abandon()``) leaves an existing ``<out>`` as it was; the frames done so far stay in the partial file,
    or it is removed when there are none. Each format is a subclass that writes one checked frame
    (``_write_frame``); :func:`open_label_writer` picks it.
    """

    newline: str | None = None

    def __init__(self, path: PathLike, code_names: dict[int, str]) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.code_names = dict(code_names)
        #: frames written so far
        self.frames = 0
        try:
            self._handle: IO[str] = self.partial.open("w", newline=self.newline)
        except OSError as exc:
            raise TrajectoryError(
                f"cannot write the output {self.path}: {exc.strerror}. Check that its folder exists and is writable"
            ) from exc
        self._start()

    def _start(self) -> None:
        """Write a file header, if the format has one."""

    def close(self) -> None:
        """Finish: the complete file takes the output's name (replacing an existing one)."""
        if not self._handle.closed:
            self._handle.close()
            self.partial.replace(self.path)

    def abandon(self) -> str:
        """Stop without touching the output; returns what became of the frames done so far."""
        if not self._handle.closed:
            self._handle.close()
            if self.frames == 0:
                self.partial.unlink(missing_ok=True)
        if self.frames == 0:
            return f"{self.path} was not written"
        return (f"{self.path} was not written; the {self.frames} frame(s) done so far are in {self.partial}")

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def write(
        self,
        frame: Frame,
        codes: np.ndarray,
        names: Sequence[str],
        distances: np.ndarray,
        positions: np.ndarray | None = None,
        clusters: np.ndarray | None = None,
    ) -> None:
        """Write one frame: ``codes``, ``names``, ``distances`` and ``clusters`` of shape (n,), ``positions``
        (n, 3) in Angstrom (default ``frame.positions``; a .csv writes none).

        Raises :class:`TrajectoryError` when the arrays' lengths differ."""
        self._write_frame(frame, self._prepare(frame, codes, names, distances, positions, clusters))
        self.frames += 1

    def _write_frame(self, frame: Frame, rows: _Rows) -> None:
        """Write one checked frame in this writer's format."""
        raise NotImplementedError

    def _prepare(
        self,
        frame: Frame,
        codes: np.ndarray,
        names: Sequence[str],
        distances: np.ndarray,
        positions: np.ndarray | None,
        clusters: np.ndarray | None = None,
    ) -> _Rows:
        """Check the lengths agree and resolve the phase name of every atom from the code table.

        ``clusters``: ice cluster id per atom (1 = largest, 0 = not ice); all 0 when not given."""
        pos = np.asarray(frame.positions if positions is None else positions, dtype=np.float64)
        codes = np.asarray(codes, dtype=np.int64)
        distances = np.asarray(distances, dtype=np.float64)
        clusters = np.zeros(len(codes), dtype=np.int64) if clusters is None else np.asarray(clusters, dtype=np.int64)
        if not (len(pos) == len(codes) == len(distances) == len(clusters)):
            raise TrajectoryError(
                f"frame {frame.index}: {len(pos)} positions but {len(codes)} codes, {len(distances)} distances "
                f"and {len(clusters)} cluster ids"
            )
        phases = [self.code_names.get(int(c), names[k] if k < len(names) else str(c)) for k, c in enumerate(codes)]
        return _Rows(pos, phases, codes, distances, clusters)


class _CsvLabelWriter(LabelWriter):
    newline = ""  # the csv module writes its own line endings

    def _start(self) -> None:
        self._csv = csv.writer(self._handle)
        self._csv.writerow(["frame", "index", "code", "phase", "distance", "cluster"])

    def _write_frame(self, frame: Frame, rows: _Rows) -> None:
        self._csv.writerows(
            (frame.index, k, int(c), p, f"{d:.6f}", int(g))
            for k, (c, p, d, g) in enumerate(zip(rows.codes, rows.phases, rows.distances, rows.clusters))
        )


def _lammps_orientation(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a general cell into LAMMPS form (a along x, b in xy): returns (new cell, rotation R).

    New cell = cell @ R is lower triangular, and positions rotate the same way (pos @ R). Built from a
    QR factorisation of cell.T, with signs fixed so the box lengths come out positive.
    """
    q, r = np.linalg.qr(cell.T)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    rotation = q * signs
    return np.tril(cell @ rotation), rotation


def _lammps_box(
    cell: np.ndarray | None, origin: np.ndarray, pbc: tuple[bool, bool, bool], positions: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """The 'ITEM: BOX BOUNDS' lines for a frame, and its positions (rotated if the cell had to be)."""
    if cell is None:
        # No box: LAMMPS/OVITO still need one, so enclose the atoms (1 A margin keeps it non-degenerate).
        lo = positions.min(axis=0) - 1.0 if len(positions) else np.zeros(3)
        hi = positions.max(axis=0) + 1.0 if len(positions) else np.ones(3)
        lines = ["ITEM: BOX BOUNDS ff ff ff"] + [f"{lo[k]:.8f} {hi[k]:.8f}" for k in range(3)]
        return lines, positions
    scale = float(np.abs(cell).max()) or 1.0
    if np.abs(cell[np.triu_indices(3, 1)]).max() > 1e-10 * scale:
        cell, rotation = _lammps_orientation(cell)
        positions = origin + (positions - origin) @ rotation
    flags = " ".join("pp" if p else "ff" for p in pbc)
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    xlo, ylo, zlo = origin
    if xy == 0.0 and xz == 0.0 and yz == 0.0:
        lines = [f"ITEM: BOX BOUNDS {flags}"]
        lines += [f"{lo:.8f} {lo + length:.8f}" for lo, length in zip(origin, (lx, ly, lz))]
        return lines, positions
    # The bounding-box form LAMMPS documents for triclinic dumps (inverse of _triclinic_box).
    lines = [
        f"ITEM: BOX BOUNDS xy xz yz {flags}",
        f"{xlo + min(0.0, xy, xz, xy + xz):.8f} {xlo + lx + max(0.0, xy, xz, xy + xz):.8f} {xy:.8f}",
        f"{ylo + min(0.0, yz):.8f} {ylo + ly + max(0.0, yz):.8f} {xz:.8f}",
        f"{zlo:.8f} {zlo + lz:.8f} {yz:.8f}",
    ]
    return lines, positions


class _DumpLabelWriter(LabelWriter):
    """LAMMPS text dump with the labels as extra columns, for OVITO.

    Columns are ``id element x y z code distance cluster``. OVITO turns the ``element`` column into particle
    types, so no numeric ``type`` column (which LAMMPS requires to be >= 1, unlike our code -1) is
    written. Every selected atom is an oxygen, hence element O throughout.
    """

    def _write_frame(self, frame: Frame, rows: _Rows) -> None:
        box, pos = _lammps_box(frame.cell, np.asarray(frame.origin, dtype=np.float64), frame.pbc, rows.positions)
        ids = frame.atom_ids if len(frame.atom_ids) == len(pos) else np.arange(1, len(pos) + 1)
        timestep = frame.timestep if frame.timestep is not None else frame.index
        lines = ["ITEM: TIMESTEP", str(timestep), "ITEM: NUMBER OF ATOMS", str(len(pos)), *box,
                 "ITEM: ATOMS id element x y z code distance cluster"]
        lines += [
            f"{i} O {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {c} {d:.6f} {g}"
            for i, p, c, d, g in zip(ids.tolist(), pos.tolist(), rows.codes.tolist(), rows.distances.tolist(),
                                     rows.clusters.tolist())
        ]
        self._handle.write("\n".join(lines) + "\n")


class _ExtxyzLabelWriter(LabelWriter):
    """Extended XYZ through ASE, with per-atom arrays ``code``, ``distance`` and ``phase``.

    extxyz columns are separated by whitespace, so phase names are written with spaces replaced by
    underscores ("not analysed" -> "not_analysed"); otherwise ASE would read back only the first word.
    """

    def _write_frame(self, frame: Frame, rows: _Rows) -> None:
        from ase import Atoms
        from ase.io import write

        atoms = Atoms(
            symbols=["O"] * len(rows.positions),
            positions=rows.positions,
            cell=frame.cell if frame.cell is not None else np.zeros((3, 3)),
            pbc=frame.pbc if frame.cell is not None else False,
        )
        atoms.new_array("code", rows.codes.astype(np.int64))
        atoms.new_array("distance", rows.distances)
        atoms.new_array("cluster", rows.clusters)
        atoms.new_array("phase", np.array(["_".join(p.split()) for p in rows.phases], dtype=str))
        atoms.info["frame"] = frame.index
        if frame.timestep is not None:
            atoms.info["timestep"] = frame.timestep
        write(self._handle, atoms, format="extxyz")


def open_label_writer(path: PathLike, code_names: dict[int, str]) -> LabelWriter:
    """A label writer chosen by the extension of ``path``: .csv, LAMMPS dump, or extxyz.

    The frames go to ``<path>.partial`` (created at once, so an unwritable path fails before any
    computation), which ``close()`` renames to ``path``: an existing ``path`` is only replaced by a
    complete file. Use it as a context manager (an exception abandons the output), or call ``close()``.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.csv`` (a table), ``.lammpstrj``/``.dump`` (a LAMMPS dump for OVITO) or ``.extxyz``.
    code_names : dict of int to str
        Phase name of each code (``Classifier.code_names``).

    Returns
    -------
    LabelWriter
        Its ``write(frame, codes, names, distances, positions=None, clusters=None)`` takes per-atom arrays
        of shape (n,) (``positions``: (n, 3), Angstrom, e.g. the denoised ones; default ``frame.positions``;
        a .csv writes no positions).

    Raises
    ------
    TrajectoryError
        For an unknown extension or a path that cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _CsvLabelWriter(path, code_names)
    if suffix in _EXTXYZ_SUFFIXES:
        return _ExtxyzLabelWriter(path, code_names)
    if suffix in _LAMMPS_SUFFIXES or "dump" in path.name.lower():
        return _DumpLabelWriter(path, code_names)
    raise TrajectoryError(
        f"cannot tell the output format of {path} from its extension. Use .csv (a table), .lammpstrj or "
        ".dump (LAMMPS dump for OVITO) or .extxyz (extended XYZ)"
    )
