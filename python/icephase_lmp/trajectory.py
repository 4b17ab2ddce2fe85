"""Trajectory I/O in one import: reading the oxygens of MD trajectories and writing per-atom phase labels.

This module only gathers the public names of the modules that hold them:

- :mod:`.readers`: :func:`read_frames`, :func:`count_frames` (LAMMPS text dumps in :mod:`.lammps_dump_reader`,
  extended XYZ through ASE in :mod:`.ase_reader`, GROMACS and other formats through MDAnalysis in
  :mod:`.mdanalysis_reader`, the format told by the name in :mod:`.file_formats`);
- :mod:`.ase_reader`: :func:`frame_from_atoms`; :mod:`.mdanalysis_reader`: :func:`frame_from_atomgroup`;
- :mod:`.frame`: :class:`Frame`, the selected atoms of one frame;
- :mod:`.selection`: :class:`Selection` (``--select``) and :func:`parse_frames` (``--frames``);
- :mod:`.label_writers`: :func:`open_label_writer`, :class:`LabelWriter`, :func:`partial_path`.

The LAMMPS box maths that dumps and data files share is in :mod:`.lammps_box`.
"""

from __future__ import annotations

from .ase_reader import frame_from_atoms
from .frame import Frame
from .label_writers import LabelWriter, open_label_writer, partial_path
from .mdanalysis_reader import frame_from_atomgroup
from .readers import count_frames, read_frames
from .selection import Selection, parse_frames

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
