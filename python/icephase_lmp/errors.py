"""The exceptions icephase raises for problems a user can cause and fix.

Every one derives from :class:`IcephaseError`, so a caller (the ``icephase`` command line, a script, the
LAMMPS compute's Python bridge) catches them all with one ``except IcephaseError``; each message says what
is wrong and how to fix it. ``IcephaseError`` is a ``ValueError``: the classes it replaces were, so code
written against them (``except ValueError``) keeps working.

A caller that passes an impossible combination of arguments to a function (a programming error, not a
problem in the data) still gets a plain ``ValueError`` or ``TypeError``, as from any Python library.

This module imports nothing, so that every module, including ``plugin_build`` (run before icephase is
installed), can import it.
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "ClassifierError",
    "DenoiseError",
    "DeviceError",
    "IcephaseError",
    "LammpsDataError",
    "ModelFileError",
    "PluginBuildError",
    "ReferenceStructureError",
    "TrainingError",
    "TrajectoryError",
]


class IcephaseError(ValueError):
    """Base of every icephase error; the message says what is wrong and how to fix it."""


class ReferenceStructureError(IcephaseError):
    """A reference structure (GenIce2 lattice or structure file) could not be built (``references``)."""


class LammpsDataError(IcephaseError):
    """A full-atom ice structure for a LAMMPS data file could not be built (``full_atom_ice``)."""


class TrajectoryError(IcephaseError):
    """A problem with a trajectory or labels file, or with how it was asked for (the readers and writers)."""


class ModelFileError(IcephaseError):
    """A model file (or training run to export) is missing, corrupt or foreign (``model_file``, ``export``)."""


class ClassifierError(IcephaseError):
    """Bad classifier input, settings or stored classifier (``classifier``, ``pipeline``)."""


class DenoiseError(IcephaseError):
    """Bad input to the denoiser, or a denoiser that runs away (``denoise``)."""


class DeviceError(IcephaseError):
    """The torch device asked for is not there (``model``)."""


class CalibrationError(IcephaseError):
    """The ice and liquid distances cannot give a threshold (``calibrate``)."""


class TrainingError(IcephaseError):
    """A training run cannot start, resume or go on, or its folder is damaged (``train``, ``export``)."""


class PluginBuildError(IcephaseError, RuntimeError):
    """The LAMMPS plugin cannot be configured or built (``plugin_build``).

    Also a ``RuntimeError``, as it was before this module: a failed build is not a bad value.
    """
