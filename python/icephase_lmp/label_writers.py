"""Writing per-atom phase labels frame by frame: a table (.csv), a LAMMPS dump for OVITO, or extended XYZ.

:func:`open_label_writer` picks the format from the output's name; every writer puts its frames in
``<out>.partial`` and renames it to ``<out>`` only when the run completes (:class:`LabelWriter`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from .errors import TrajectoryError
from .file_formats import PathLike, output_format
from .frame import Frame
from .lammps_box import dump_box

__all__ = ["LabelWriter", "open_label_writer", "partial_path"]


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


class _DumpLabelWriter(LabelWriter):
    """LAMMPS text dump with the labels as extra columns, for OVITO.

    Columns are ``id element x y z code distance cluster``. OVITO turns the ``element`` column into particle
    types, so no numeric ``type`` column (which LAMMPS requires to be >= 1, unlike our code -1) is
    written. Every selected atom is an oxygen, hence element O throughout.
    """

    def _write_frame(self, frame: Frame, rows: _Rows) -> None:
        box, pos = dump_box(frame.cell, np.asarray(frame.origin, dtype=np.float64), frame.pbc, rows.positions)
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
    writers = {"csv": _CsvLabelWriter, "extxyz": _ExtxyzLabelWriter, "lammps": _DumpLabelWriter}
    return writers[output_format(path)](path, code_names)
