"""Denoise (optionally) then classify one configuration: what ``icephase classify`` does per frame."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import denoise as denoise_module
from .boundary import extend_ice
from .classifier import Classifier
from .clusters import Clusters, ice_clusters
from .denoise import DenoiseResult, check_cell, denoise
from .errors import ClassifierError, DenoiseError
from .geometry import perpendicular_widths, too_close, wrap_positions
from .model_file import IcephaseModel, load_model
from .other_crystal import REPEAT_TEST_ITERATIONS, label_other_crystal, liquid_pairs, second_look
from .phase_vote import PhaseVoteSettings, vote_phases
from .phases import LIQUID, MIN_OXYGEN_DISTANCE, TOO_CLOSE_DISTANCE
from .ring_census import ring_census, ring_flags
from .site_census import census, site_types


@dataclass
class FrameResult:
    """What the pipeline found in one configuration."""

    #: (n,) phase codes, after the boundary step
    codes: np.ndarray
    #: (n,) distance to the nearest reference environment (the classifier's)
    distances: np.ndarray
    #: the positions that were classified (denoised unless --no-denoise), wrapped into the cell
    positions: np.ndarray
    #: denoising of the oxygens that are not too close (None without denoising)
    denoising: DenoiseResult | None
    #: connected ice molecules (first-shell neighbours in the input positions), largest first
    clusters: Clusters
    #: (N,) bool: oxygens closer than MIN_OXYGEN_DISTANCE to another one: code LIQUID, distance
    #: TOO_CLOSE_DISTANCE, and left out of the others' denoising and SOAP (phases.py says why)
    too_close: np.ndarray | None = None

    @property
    def n_too_close(self) -> int:
        """How many oxygens were too close to another one."""
        return 0 if self.too_close is None else int(self.too_close.sum())


class Pipeline:
    """A loaded model with the user's choices: denoise or not, iterations, metric, threshold.

    What ``icephase classify``, the MDAnalysis analysis, the OVITO modifier and :func:`icephase_lmp.classify`
    run on each frame (:meth:`run`). Lengths are in Angstrom.

    Parameters
    ----------
    model : IcephaseModel
        A loaded model file (:func:`~icephase_lmp.model_file.load_model`).
    use_denoiser : bool, optional
        False: classify the raw positions (SOAP only, the ``raw/...`` thresholds, no boundary step).
    iterations : int, optional
        Denoising iterations; default: the model's.
    tolerance : float, optional
        Stop denoising once the largest step is below this, Angstrom (0: never); default: the model's.
    metric : {"euclidean", "cosine"}, optional
        Default: the model's.
    threshold : float, optional
        Liquid threshold; default: the model's calibrated one for this metric and ``use_denoiser``.
    device : str, optional
        Torch device of the denoiser (``"cpu"`` or ``"cuda"``); the model must have been loaded on it.
    boundary_rounds : int, optional
        Rounds of the boundary step (0: off); default: the model's. Always 0 without the denoiser.
    other_crystal : bool, optional
        Label ``OTHER_CRYSTAL`` the liquid-labelled molecules whose environment repeats among their
        neighbours, and those they enclose (``other_crystal.py``), and label liquid crystal labels isolated in
        liquid, one or two (``lone_crystal.py``); default True. Always off without the denoiser, on whose
        output it was measured.
    phase_vote : bool, optional
        Put each ice-labelled molecule's phase to a vote among its ice-labelled neighbours (``phase_vote.py``),
        as the model's settings say (models from before the vote: off); default True. Always off without the
        denoiser.

    Raises
    ------
    ClassifierError
        When no threshold is given and the model has none calibrated, or ``boundary_rounds < 0``.
    """

    def __init__(
        self,
        model: IcephaseModel,
        use_denoiser: bool = True,
        iterations: int | None = None,
        tolerance: float | None = None,
        metric: str | None = None,
        threshold: float | None = None,
        device: str = "cpu",
        boundary_rounds: int | None = None,
        other_crystal: bool = True,
        phase_vote: bool = True,
    ):
        self.model = model
        self.use_denoiser = use_denoiser
        self.iterations = model.iterations if iterations is None else iterations
        self.tolerance = model.tolerance if tolerance is None else tolerance
        self.metric = metric or model.classifier.metric
        self.threshold = (
            model.classifier.threshold(self.metric, denoised=use_denoiser) if threshold is None else threshold
        )
        self.device = device
        # the boundary step was tuned on denoised positions: without the denoiser it is off
        rounds = model.classifier.boundary.rounds if boundary_rounds is None else boundary_rounds
        if rounds < 0:
            raise ClassifierError(f"boundary rounds must be >= 0 (0: off), got {rounds}")
        self.boundary = replace(model.classifier.boundary, rounds=rounds if use_denoiser else 0)
        self.other_crystal = bool(other_crystal and use_denoiser)
        self.phase_vote = model.classifier.phase_vote if phase_vote and use_denoiser else PhaseVoteSettings()

    @classmethod
    def from_path(cls, path: str | Path | None = None, device: str = "cpu", **kwargs) -> "Pipeline":
        """Load the model file at ``path`` (``None``: the shipped model) on ``device``; ``kwargs`` as for
        :class:`Pipeline`."""
        return cls(load_model(path, device=device), device=device, **kwargs)

    @property
    def classifier(self) -> Classifier:
        """The model's classifier."""
        return self.model.classifier

    def run(self, positions: np.ndarray, cell: np.ndarray | None, pbc) -> FrameResult:
        """Labels of every oxygen of one configuration.

        Denoise (unless switched off), classify, vote on the phases, extend the ice across its boundary,
        label the crystals without a reference (the site census, the repeat test and its settle pass, the ring
        census), find ice clusters.
        Oxygens closer than ``MIN_OXYGEN_DISTANCE`` to another one are not water: they are labelled liquid
        with distance ``TOO_CLOSE_DISTANCE`` and left out of the others' denoising and SOAP.

        Parameters
        ----------
        positions : array_like, shape (N, 3)
            Oxygen positions, Angstrom; they need not be wrapped into the cell.
        cell : array_like, shape (3, 3) or None
            Cell vectors as rows, Angstrom; ``None``: no box (an open cluster).
        pbc : tuple of 3 bool
            Periodicity along each cell vector.

        Returns
        -------
        FrameResult
            Codes, distances and clusters of shape (N,), the classified positions (N, 3) wrapped into the
            cell, and the denoising record.

        Raises
        ------
        DenoiseError
            When ``positions`` hold NaN or Inf, the cell has no volume or is narrower than the denoiser's
            cutoff, or the denoiser runs away.
        ClassifierError
            On input the classifier cannot describe.
        """
        pos = np.asarray(positions, dtype=np.float64)
        if not np.isfinite(pos).all():
            raise DenoiseError("positions contain NaN or Inf: the simulation has blown up or the file is corrupt")
        check_cell(cell, pbc)
        out_cell = cell
        cell = self._working_cell(cell, pbc)
        # trajectory readers already wrap; positions handed in directly may not be
        pos = wrap_positions(pos, cell, pbc)
        close = too_close(pos, cell, pbc, MIN_OXYGEN_DISTANCE)
        kept = ~close
        codes = np.full(len(pos), LIQUID, dtype=np.int32)
        distances = np.full(len(pos), TOO_CLOSE_DISTANCE)
        result: DenoiseResult | None = None
        clean = pos.copy()
        if not kept.any():
            return FrameResult(codes, distances, clean, result, ice_clusters(codes, pos, cell, pbc, self.boundary.shell),
                               close)
        if self.use_denoiser:
            result = denoise(
                self.model.offline_denoiser(self.device), pos[kept], cell, pbc, self.model.r_max, self.iterations,
                self.tolerance, self.device, snapshot=REPEAT_TEST_ITERATIONS if self.other_crystal else 0,
            )
            # the denoiser moves atoms continuously, across the cell's faces too: back into the cell
            clean[kept] = wrap_positions(result.positions, cell, pbc)
        clf = self.classifier
        reduced = clf.reduce(clf.soap_features(clean[kept], cell, pbc))
        out = clf.classify_reduced(reduced, self.metric, self.threshold, denoised=self.use_denoiser)
        # the too-close oxygens are in nobody's first shell either: the vote and the boundary step see the
        # others only
        voted = vote_phases(out.codes, clean[kept], cell, pbc, self.phase_vote)
        grown = extend_ice(voted, clean[kept], cell, pbc, self.boundary)
        if self.other_crystal:
            grown = run_site_census(clf, grown, out.codes, reduced, clean[kept], cell, pbc, self.boundary.shell)
            # the repeat test looks after the first iterations too (other_crystal.py says why)
            early_positions = None if result is None else result.early_positions
            if early_positions is not None:
                early_positions = wrap_positions(early_positions, cell, pbc)
            pairs = liquid_pairs(grown, clean[kept], cell, pbc)
            early = second_look(clf, grown, reduced, clean[kept], early_positions, cell, pbc, self.metric,
                                self.threshold, pairs)
            grown = label_other_crystal(grown, reduced, clean[kept], cell, pbc, self.metric, self.threshold,
                                        self.boundary.shell, early, pairs)
            grown = run_ring_census(clf, grown, clean[kept], cell, pbc, self.boundary.shell)
        codes[kept] = grown
        distances[kept] = out.distances
        # on the input positions, as LAMMPS's compute cluster/atom sees them (docs/nucleation.md)
        clusters = ice_clusters(codes, pos, cell, pbc, self.boundary.shell)
        return FrameResult(codes, distances, wrap_positions(clean, out_cell, pbc), result, clusters, close)

    def _working_cell(self, cell: np.ndarray | None, pbc) -> np.ndarray | None:
        """The cell to compute in: the given one, unless it is a narrow basis of a wider lattice.

        A cell tilted by whole box lengths (e.g. LAMMPS xy = lx) describes the same periodic system as a
        more orthogonal one, but its faces are closer together than the denoiser's cutoff allows. Then the
        Minkowski-reduced basis of the same lattice is used; any other cell is kept as it is."""
        if cell is None or not all(bool(p) for p in pbc):
            return cell
        from ase.geometry import minkowski_reduce

        cell = np.asarray(cell, dtype=np.float64)
        if perpendicular_widths(cell).min() >= self.model.r_max:
            return cell
        reduced, _ = minkowski_reduce(cell)
        if perpendicular_widths(reduced).min() > perpendicular_widths(cell).min():
            return reduced
        return cell


def run_site_census(classifier: Classifier, codes: np.ndarray, first_codes: np.ndarray, reduced: np.ndarray,
                    positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float) -> np.ndarray:
    """``codes`` (after the boundary step) with each ice cluster's molecules of a phase made other crystal where
    the cluster holds the phase's sites in other proportions (site_census). ``first_codes`` and ``reduced``: the
    classifier's codes and reduced SOAP vectors; ``shell`` the first-shell radius of the ice clusters. The LAMMPS
    compute runs the same steps rank by rank."""
    if not len(classifier.sites):
        return codes
    sites = site_types(classifier.sites, reduced, first_codes)
    if not np.any(sites >= 0):  # no molecule named a phase of several sites: nothing to count
        return codes
    return census(classifier.sites, codes, sites, ice_clusters(codes, positions, cell, pbc, shell).ids)


def run_ring_census(classifier: Classifier, codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None,
                    pbc, shell: float) -> np.ndarray:
    """``codes`` (after the other-crystal step) with each ice cluster's molecules of a phase made other crystal
    where they sit on rings the phase has not (ring_census). After the other-crystal step, not before: a
    molecule counts only where its rings see crystal labels, and a crystal without a reference is labelled
    other crystal there, so the phase-labelled part of it has crystal around it."""
    if not len(classifier.rings) or not np.isin(codes, classifier.rings.counted_codes()).any():
        return codes
    flags = ring_flags(classifier.rings, positions, cell, pbc, codes)
    return ring_census(codes, flags, ice_clusters(codes, positions, cell, pbc, shell).ids)


def set_threads(n: int) -> None:
    """CPU threads of the denoiser (0: the libraries' defaults): torch's, for a TorchScript denoiser, and those
    of numpy's BLAS, for the compiled-kernel path (denoiser_kernel.py). 1 is best on small machines (2 torch
    threads on 2 cores was 5-20x slower here). Torch is not imported for this: the setting waits until a
    TorchScript denoiser runs."""
    if n <= 0:
        return
    from threadpoolctl import threadpool_limits

    denoise_module.TORCH_THREADS = n
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")
