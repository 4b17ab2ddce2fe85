"""Denoise (optionally) then classify one configuration: what ``icephase classify`` does per frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .classifier import Classifier
from .denoise import DenoiseResult, denoise
from .model_file import IcephaseModel, load_model


@dataclass
class FrameResult:
    codes: np.ndarray
    distances: np.ndarray
    positions: np.ndarray  # the positions that were classified (denoised unless --no-denoise)
    denoising: DenoiseResult | None


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

    @classmethod
    def from_path(cls, path: str | Path | None = None, device: str = "cpu", **kwargs) -> "Pipeline":
        return cls(load_model(path, device=device), device=device, **kwargs)

    @property
    def classifier(self) -> Classifier:
        return self.model.classifier

    def run(self, positions: np.ndarray, cell: np.ndarray | None, pbc) -> FrameResult:
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
        return FrameResult(out.codes, out.distances, pos, result)


def set_threads(n: int) -> None:
    """Torch CPU threads; 1 is best on small machines (2 threads on 2 cores was 5-20x slower here)."""
    if n > 0:
        torch.set_num_threads(n)
