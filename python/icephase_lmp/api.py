"""The Python API for notebooks: label the oxygens of an ASE ``Atoms`` in one call.

    from ase.io import read
    import icephase_lmp

    labels = icephase_lmp.classify(read("traj.extxyz"), store=True)
    labels.fractions        # {'liquid': 0.0, 'Ih': 1.0, ...}

:func:`classify` runs the very :class:`~icephase_lmp.pipeline.Pipeline` that ``icephase classify`` runs per
frame, on the oxygens the command would pick. :func:`pipeline_for` is the one place where a model argument
(``None`` for the shipped model, a path, a loaded model or a ready ``Pipeline``) becomes a ``Pipeline``; the
MDAnalysis analysis and the OVITO modifier use it too. Loaded models are kept per process, so calling
:func:`classify` frame after frame loads the model (and pays TorchScript's warm-up) once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .phases import NOT_ANALYSED, output_codes

if TYPE_CHECKING:
    from .model_file import IcephaseModel
    from .pipeline import FrameResult, Pipeline

#: ``Atoms.arrays`` keys written by ``classify(..., store=True)``; every atom gets a value (non-oxygens:
#: code ``NOT_ANALYSED`` (-1), distance NaN, cluster 0).
CODE_ARRAY = "icephase_code"
DISTANCE_ARRAY = "icephase_distance"
CLUSTER_ARRAY = "icephase_cluster"

_MODELS: dict[tuple[str, str, int], IcephaseModel] = {}


def load_cached(path: str | Path | None = None, device: str = "cpu") -> IcephaseModel:
    """``model_file.load_model``, once per file (and modification time) and device in this process."""
    from .model_file import SHIPPED_MODEL, load_model, model_file_path

    # a shipped model's name ("icephase-12phase") becomes its file first (resolving the bare name would not);
    # a missing file raises ModelFileError here
    resolved = model_file_path(path if path is not None else SHIPPED_MODEL).resolve()
    key = (str(resolved), device, resolved.stat().st_mtime_ns)
    if key not in _MODELS:
        _MODELS[key] = load_model(resolved, device=device)
    return _MODELS[key]


def pipeline_for(model: Any = None, *, denoise: bool = True, device: str = "cpu", **options: Any) -> Pipeline:
    """A :class:`~icephase_lmp.pipeline.Pipeline` from what a user hands in.

    Parameters
    ----------
    model
        ``None`` (the shipped model), a model file path, a loaded ``IcephaseModel``, or a ``Pipeline``
        (returned as it is; then no other option may be given).
    denoise
        Denoise before classifying (``icephase classify --no-denoise`` is ``denoise=False``).
    device
        ``"cpu"`` or ``"cuda"``.
    **options
        The other ``Pipeline`` settings: ``iterations``, ``tolerance``, ``metric``, ``threshold``,
        ``boundary_rounds`` (each defaults to the model's), ``other_crystal``, ``phase_vote`` (default True).
    """
    from .model_file import IcephaseModel
    from .pipeline import Pipeline

    if isinstance(model, Pipeline):
        if options or not denoise or device != "cpu":
            raise ValueError("pass the options to Pipeline(...) itself, or pass a model path instead of a Pipeline")
        return model
    loaded = model if isinstance(model, IcephaseModel) else load_cached(model, device)
    return Pipeline(loaded, use_denoiser=denoise, device=device, **options)


@dataclass(frozen=True)
class PhaseLabels:
    """The labels of the selected oxygens of one configuration.

    All arrays have one entry per selected oxygen, in the order of ``indices``.
    """

    #: (n,) int32 phase codes (``phases.py``: 0 liquid, 1 Ih, ... as in every icephase output)
    codes: np.ndarray
    #: (n,) float64 distance to the nearest reference environment (PCA units; -1: oxygen too close to another)
    distances: np.ndarray
    #: (n,) int64 indices of the oxygens in the input (``Atoms`` index, or ``AtomGroup`` position)
    indices: np.ndarray
    #: (n,) int32 ice cluster ids: 1 the largest cluster, 0 not ice
    clusters: np.ndarray
    #: code -> phase name of the model (with -1 "not analysed" and 0 "liquid")
    code_names: dict[int, str]

    @property
    def names(self) -> list[str]:
        """(n,) phase name of each oxygen."""
        return [self.code_names[int(c)] for c in self.codes]

    @property
    def largest_cluster(self) -> int:
        """Molecules in the largest ice cluster (0 without ice)."""
        return int(np.count_nonzero(self.clusters == 1))

    @property
    def fractions(self) -> dict[str, float]:
        """Fraction of the oxygens in each phase of the model (liquid first), zeros included."""
        n = max(len(self.codes), 1)
        return {self.code_names[code]: np.count_nonzero(self.codes == code) / n
                for code in output_codes(self.code_names)}

    @classmethod
    def from_result(cls, result: FrameResult, indices: np.ndarray, code_names: dict[int, str]) -> PhaseLabels:
        """The labels of a pipeline result for the oxygens at ``indices`` (shape (n,)) of the caller's atoms."""
        return cls(np.asarray(result.codes, dtype=np.int32), np.asarray(result.distances, dtype=np.float64),
                   np.asarray(indices, dtype=np.int64), np.asarray(result.clusters.ids, dtype=np.int32),
                   dict(code_names))


def classify(
    atoms: Any,
    model: Any = None,
    *,
    select: str | None = None,
    denoise: bool = True,
    store: bool = False,
    **options: Any,
) -> PhaseLabels:
    """Label every water oxygen of an ASE ``Atoms`` as one of the model's phases or liquid.

    Parameters
    ----------
    atoms
        An ``ase.Atoms``: positions in Angstrom; the cell and ``pbc`` as they are (a zero cell means no box).
    model
        ``None`` for the shipped model, a model file (``icephase export``), a loaded model or a ``Pipeline``.
    select
        Which atoms are oxygens, in the CLI's syntax (``"element O"``, ``"name OW"``, ``"type 1"``); default:
        chemical symbol ``O``, as ``icephase classify`` does for extxyz files.
    denoise
        ``False``: classify the raw positions (``--no-denoise``).
    store
        Also write full-length arrays into ``atoms.arrays``: ``icephase_code`` (int, -1 for atoms that are
        not selected oxygens), ``icephase_distance`` (float, NaN there) and ``icephase_cluster`` (int, 0 there).
        ``ase.io.write(..., format="extxyz")`` keeps them.
    **options
        ``iterations``, ``tolerance``, ``metric``, ``threshold``, ``boundary_rounds``, ``other_crystal``,
        ``phase_vote``, ``device``: as the options of ``icephase classify``.

    Returns
    -------
    PhaseLabels
        Codes, distances, cluster ids and the indices of the oxygens, and ``names`` / ``fractions``.
    """
    from .ase_reader import frame_from_atoms

    pipeline = pipeline_for(model, denoise=denoise, **options)
    frame = frame_from_atoms(atoms, select)
    result = pipeline.run(frame.positions, frame.cell, frame.pbc)
    labels = PhaseLabels.from_result(result, frame.atom_ids, pipeline.classifier.code_names)
    if store:
        store_labels(atoms, labels)
    return labels


def store_labels(atoms: Any, labels: PhaseLabels) -> None:
    """Write ``labels`` into ``atoms.arrays`` as full-length arrays (see :func:`classify`)."""
    n = len(atoms)
    codes = np.full(n, NOT_ANALYSED, dtype=np.int32)
    distances = np.full(n, np.nan)
    clusters = np.zeros(n, dtype=np.int32)
    codes[labels.indices] = labels.codes
    distances[labels.indices] = labels.distances
    clusters[labels.indices] = labels.clusters
    for name, values in ((CODE_ARRAY, codes), (DISTANCE_ARRAY, distances), (CLUSTER_ARRAY, clusters)):
        atoms.set_array(name, values)
