"""icephase: on-the-fly ice phase classification for LAMMPS and offline trajectories.

The Python API is imported on first use, so that ``import icephase_lmp`` (and ``icephase --help``) stays
free of torch and MDAnalysis:

- :func:`classify` (``icephase_lmp.api``): label the oxygens of an ASE ``Atoms``;
- :class:`IcePhase` (``icephase_lmp.mdanalysis``): an MDAnalysis analysis over a trajectory;
- :class:`IcePhaseModifier` (``icephase_lmp.ovito_modifier``): the OVITO modifier.
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
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
