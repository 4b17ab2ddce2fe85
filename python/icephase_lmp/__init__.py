"""icephase: on-the-fly ice phase classification for LAMMPS and offline trajectories.

The Python API is imported on first use, so that ``import icephase_lmp`` (and ``icephase --help``) stays
free of torch and MDAnalysis:

- :func:`classify` (``icephase_lmp.api``): label the oxygens of an ASE ``Atoms``;
- :class:`IcePhase` (``icephase_lmp.mdanalysis``): an MDAnalysis analysis over a trajectory;
- :class:`IcePhaseModifier` (``icephase_lmp.ovito_modifier``): the OVITO modifier;
- :class:`IcephaseError` (``icephase_lmp.errors``): the base of every error a user can cause.

Module map (lengths are in Angstrom throughout):

- ``phases``: the phase table (names, codes, colours, GenIce2 lattices) and the distance limits;
- ``references``: the ideal reference structures (GenIce2 lattices or structure files);
- ``configs``: the denoiser's and training's settings (no torch);
- ``denoiser_network``: the denoiser network (NequIP); ``compact_denoiser``: the trained network rewritten for
  inference, as model files store it; ``denoiser_kernel``: that network offline on CPU with its message sums
  compiled (``_denoiser_kernel``); ``train``: its training; ``denoise``: the iterative denoising;
- ``soap``: the SOAP power spectrum (our compiled kernel ``_soap_kernel``; DScribe's extension as the
  fallback); ``classifier``: the SOAP classifier;
  ``denoised_references``: references as the denoiser leaves them;
- ``boundary``: the boundary step that extends ice labels next to liquid; ``clusters``: ice clusters;
- ``pipeline``: denoise, classify, boundary step and clusters of one frame;
- ``calibrate``: the ice/liquid threshold; ``model_file``: the one-file ``model.pth``; ``export``: writes it;
- I/O: ``readers`` reads trajectories (``read_frames``, ``count_frames``), the format told by the name in
  ``file_formats``, through ``lammps_dump_reader`` (LAMMPS text dumps), ``ase_reader`` (extxyz, ASE ``Atoms``)
  and ``mdanalysis_reader`` (GROMACS and other MDAnalysis formats); ``frame``: one frame's selected atoms;
  ``selection``: ``--select`` and ``--frames``; ``label_writers``: labels as .csv, LAMMPS dump or extxyz;
  ``trajectory``: these names in one import;
- ``lammps_box``: LAMMPS box maths (restricted triclinic cell, dump box bounds); ``geometry``: cells and
  neighbour lists;
- ``full_atom_ice``: O + 2 H ice structures from GenIce2 networks; ``lammps_data``: them as LAMMPS data files;
  ``tip4p_ice``: the TIP4P/Ice settings; ``lammps_bridge``: what the LAMMPS compute calls; ``plugin_build``:
  builds that compute;
- ``cli``: the ``icephase`` command; ``render``: pictures;
- ``api``, ``mdanalysis``, ``ovito_modifier``: the Python API, the MDAnalysis analysis, the OVITO modifier;
- ``errors``: the exceptions.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "classify": "api",
    "PhaseLabels": "api",
    "pipeline_for": "api",
    "IcePhase": "mdanalysis",
    "IcePhaseModifier": "ovito_modifier",
    "Pipeline": "pipeline",
    "IcephaseError": "errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
