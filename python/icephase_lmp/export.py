"""``icephase export``: a finished training run + a fitted classifier -> one ``model.pth``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from .classifier import Classifier
from .model_file import build_metadata, save_model
from .train import TrainConfig, load_trained
from .model import script_denoiser
import json


def export_run(
    run_dir: str | Path, classifier: Classifier, out: str | Path, iterations: int = 8, tolerance: float = 0.0
) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoint.pt").is_file():
        raise FileNotFoundError(f"{run_dir} holds no checkpoint.pt: train first with `icephase train {run_dir}`")
    model, config = load_trained(run_dir)
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    training = {"config": asdict(config), "steps_done": int(state["step"])}
    metadata = build_metadata(config.model, classifier, iterations, tolerance, training)
    return save_model(out, script_denoiser(model), classifier, metadata)
