"""Denoise (optionally) then classify one configuration: what ``icephase classify`` does per frame."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .boundary import extend_ice
from .classifier import Classifier
from .clusters import Clusters, ice_clusters
from .denoise import DenoiseResult, denoise
from .model_file import IcephaseModel, load_model


@dataclass
class FrameResult:
    """What the pipeline found in one configuration."""

    codes: np.ndarray  # (n,) phase codes after the boundary step
    distances: np.ndarray  # (n,) distance to the nearest reference environment (classifier)
    positions: np.ndarray  # the positions that were classified (denoised unless --no-denoise)
    denoising: DenoiseResult | None
    clusters: Clusters  # connected ice molecules (first-shell neighbours in the input), largest first


class Pipeline:
    """A loaded model with the user's choices: denoise or not, iterations, metric, threshold."""

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
            raise ValueError(f"boundary rounds must be >= 0 (0: off), got {rounds}")
        self.boundary = replace(model.classifier.boundary, rounds=rounds if use_denoiser else 0)

    @classmethod
    def from_path(cls, path: str | Path | None = None, device: str = "cpu", **kwargs) -> "Pipeline":
        return cls(load_model(path, device=device), device=device, **kwargs)

    @property
    def classifier(self) -> Classifier:
        return self.model.classifier

    def run(self, positions: np.ndarray, cell: np.ndarray | None, pbc) -> FrameResult:
        """Denoise (unless switched off), classify, extend the ice across its boundary, find ice clusters."""
        result: DenoiseResult | None = None
        pos = np.asarray(positions, dtype=np.float64)
        if self.use_denoiser:
            result = denoise(
                self.model.denoiser, pos, cell, pbc, self.model.r_max, self.iterations, self.tolerance, self.device
            )
            pos = result.positions
        out = self.classifier.classify(
            pos, cell, pbc, metric=self.metric, threshold=self.threshold, denoised=self.use_denoiser
        )
        codes = extend_ice(out.codes, pos, cell, pbc, self.boundary)
        # on the input positions, as LAMMPS's compute cluster/atom sees them (docs/nucleation.md)
        clusters = ice_clusters(codes, positions, cell, pbc, self.boundary.shell)
        return FrameResult(codes, out.distances, pos, result, clusters)


def set_threads(n: int) -> None:
    """Torch CPU threads; 1 is best on small machines (2 threads on 2 cores was 5-20x slower here)."""
    if n > 0:
        torch.set_num_threads(n)
