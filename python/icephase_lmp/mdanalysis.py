"""An MDAnalysis analysis: the phase of every selected oxygen in every frame, serial or parallel over frames.

    import MDAnalysis as mda
    from icephase_lmp import IcePhase

    u = mda.Universe("md.tpr", "md.xtc")
    ice = IcePhase(u.select_atoms("name OW")).run(step=10, verbose=True)
    ice.results.fractions[:, ice.results.phases.index("Ih")]     # fraction of Ih per frame

Each frame goes through the same :class:`~icephase_lmp.pipeline.Pipeline` as ``icephase classify`` (built by
:func:`icephase_lmp.api.pipeline_for`). Frames are independent, so the analysis runs on MDAnalysis's own
parallel backends (``run(backend="multiprocessing" | "dask", n_workers=N)``) with the labels of a serial run.
The model is loaded in :meth:`IcePhase._prepare`, i.e. in each worker, never pickled: a TorchScript module
cannot be sent to another process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from MDAnalysis.analysis.base import AnalysisBase
from MDAnalysis.analysis.results import ResultsGroup

from .errors import TrajectoryError
from .phases import code_table, output_codes


class IcePhase(AnalysisBase):
    """Ice phase of each atom of an oxygen ``AtomGroup``, frame by frame.

    Parameters
    ----------
    atomgroup
        The water oxygens, e.g. ``u.select_atoms("name OW")``. Positions in Angstrom; a frame without a box
        (or with a zero one) is treated as not periodic.
    model
        ``None`` for the shipped model, or a model file path (``icephase export``).
    denoise
        ``False``: classify the raw positions (``icephase classify --no-denoise``).
    threads
        CPU threads of the denoiser per process (numpy's BLAS, or torch's; default 1: one per worker is what
        parallel runs want).
    verbose
        MDAnalysis's progress bar (serial runs).
    **options
        ``iterations``, ``tolerance``, ``metric``, ``threshold``, ``boundary_rounds``, ``device``: as for
        ``icephase classify``.

    Attributes
    ----------
    results.codes : ndarray, (n_frames, n_atoms) int32
        Phase codes (0 liquid, 1 Ih, ...; ``results.code_names`` maps them to names).
    results.distances : ndarray, (n_frames, n_atoms) float64
        Distance to the nearest reference environment (-1: an oxygen too close to another).
    results.clusters : ndarray, (n_frames, n_atoms) int32
        Ice cluster id per atom: 1 the largest cluster of the frame, 0 not ice.
    results.fractions : ndarray, (n_frames, n_phases) float64
        Fraction of the atoms in each phase; column ``k`` is phase code ``k`` (0 liquid, 1..K the model's
        phases), the last column "other crystal" (code -2); named by ``results.phases``.
    results.largest_cluster : ndarray, (n_frames,) int64
        Molecules in the largest ice cluster of each frame.
    results.phases : list of str
        Column names of ``results.fractions``: ``["liquid", "Ih", "Ic", ..., "other crystal"]``.
    results.code_names : dict
        Code -> phase name, with -1 "not analysed" and -2 "other crystal".
    """

    _analysis_algorithm_is_parallelizable = True

    @classmethod
    def get_supported_backends(cls) -> tuple[str, ...]:
        """The MDAnalysis backends ``run(backend=...)`` accepts: frames are independent, so all of them."""
        return ("serial", "multiprocessing", "dask")

    def __init__(
        self,
        atomgroup: Any,
        model: str | Path | None = None,
        *,
        denoise: bool = True,
        threads: int = 1,
        verbose: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(atomgroup.universe.trajectory, verbose=verbose)
        if len(atomgroup) == 0:
            raise TrajectoryError("the AtomGroup is empty: select the water oxygens, e.g. u.select_atoms('name OW')")
        self._ag = atomgroup
        # a path, not a loaded model: the analysis object is pickled to every worker of a parallel run
        self._model = None if model is None else str(model)
        self._denoise = denoise
        self._threads = threads
        self._options = options
        self._pipeline = None
        self._n_phases = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pipeline"] = None  # reloaded by _prepare in the worker
        return state

    def _prepare(self) -> None:
        from .api import pipeline_for
        from .pipeline import set_threads

        set_threads(self._threads)
        if self._pipeline is None:
            self._pipeline = pipeline_for(self._model, denoise=self._denoise, **self._options)
        self._codes = output_codes(self._pipeline.classifier.code_names)
        self._n_phases = len(self._codes)
        shape = (self.n_frames, len(self._ag))
        self.results.codes = np.zeros(shape, dtype=np.int32)
        self.results.distances = np.zeros(shape, dtype=np.float64)
        self.results.clusters = np.zeros(shape, dtype=np.int32)
        self.results.fractions = np.zeros((self.n_frames, self._n_phases), dtype=np.float64)
        self.results.largest_cluster = np.zeros(self.n_frames, dtype=np.int64)

    def _single_frame(self) -> None:
        from .mdanalysis_reader import frame_from_atomgroup

        frame = frame_from_atomgroup(self._ag)
        out = self._pipeline.run(frame.positions, frame.cell, frame.pbc)
        i = self._frame_index
        self.results.codes[i] = out.codes
        self.results.distances[i] = out.distances
        self.results.clusters[i] = out.clusters.ids
        self.results.fractions[i] = [np.count_nonzero(out.codes == c) / len(out.codes) for c in self._codes]
        self.results.largest_cluster[i] = out.clusters.largest

    def _get_aggregator(self) -> ResultsGroup:
        frames = ResultsGroup.ndarray_vstack
        return ResultsGroup(lookup={
            "codes": frames, "distances": frames, "clusters": frames, "fractions": frames,
            "largest_cluster": ResultsGroup.ndarray_hstack,
        })

    def _conclude(self) -> None:
        from .model_file import SHIPPED_MODEL, read_metadata

        # the main process of a parallel run never loaded the model: the names come from its metadata
        if self._pipeline is not None:
            names = dict(self._pipeline.classifier.code_names)
        else:
            meta = read_metadata(self._model or SHIPPED_MODEL)
            # the model's phases in code order 1..K; code_table adds the package's codes (-2, -1, 0)
            phases = sorted((p for p in meta["phases"] if p["code"] > 0), key=lambda p: p["code"])
            names = code_table([p["name"] for p in phases])
        self.results.code_names = names
        self.results.phases = [names[c] for c in output_codes(names)]
