"""``icephase export``: a trained denoiser + a fitted classifier -> one ``model.pth``.

The denoiser comes from a training run folder (its checkpoint) or from an existing model file (re-export:
same denoiser weights, the classifier fitted afresh, e.g. with another SOAP cutoff).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .classifier import Classifier
from .errors import ModelFileError
from .denoised_references import DenoisedReferenceSettings, add_denoised_references
from .denoiser_network import DenoiserConfig, denoiser_from_weights, inference_module
from .model_file import (
    IcephaseModel, build_metadata, load_model, read_metadata, save_model, state_arrays, training_reference_specs,
)
from .references import Reference
from .train import load_trained, read_checkpoint, read_run_config


def training_references(source: str | Path) -> list[str] | None:
    """The reference specs a run (folder) or model (file) was trained on; None: the built-in seven."""
    source = Path(source)
    if source.is_file():
        return training_reference_specs(read_metadata(source))
    config = source / "config.json"
    if not config.is_file():
        raise ModelFileError(f"{source} is neither a model file nor a training run folder (no config.json)")
    return read_run_config(source).get("references") or None


def _denoiser(source: Path) -> tuple[torch.jit.ScriptModule, str, DenoiserConfig, dict, dict[str, np.ndarray]]:
    """The denoiser of a model file or a run folder as a model file stores it: frozen module, its form
    (``inference_module``), architecture, training record, and the training network's weights."""
    if source.is_file():
        return _model_denoiser(load_model(source))
    if not (source / "checkpoint.pt").is_file():
        raise ModelFileError(f"{source} holds no checkpoint.pt: train first with `icephase train {source}`")
    eager, run_config = load_trained(source)
    training = {"config": asdict(run_config), "steps_done": int(read_checkpoint(source / "checkpoint.pt")["step"])}
    module, form = inference_module(eager, run_config.model)
    return module, form, run_config.model, training, state_arrays(eager)


def _model_denoiser(model: IcephaseModel) -> tuple[torch.jit.ScriptModule, str, DenoiserConfig, dict,
                                                   dict[str, np.ndarray]]:
    """As :func:`_denoiser`, for a loaded model file: its network rebuilt from its weights."""
    config = DenoiserConfig(**model.metadata["denoiser"])
    weights = model.network_weights()
    module, form = inference_module(denoiser_from_weights(config, weights), config)
    return module, form, config, model.metadata.get("training", {}), weights


def recompile_denoiser(source: str | Path, out: str | Path) -> Path:
    """Write ``out``: the model file ``source`` with its denoiser stored afresh by this version (the compact
    form where there is one), keeping its classifier, thresholds and every other setting. The same weights,
    so the same eps to float32 rounding (``icephase export --keep-classifier``)."""
    source = Path(source)
    if not source.is_file():
        raise ModelFileError(f"{source}: --keep-classifier takes a model file, not a training run folder")
    model = load_model(source)
    module, form, _, _, weights = _model_denoiser(model)
    metadata = dict(model.metadata, denoiser_module=form)
    return save_model(out, module, model.classifier, metadata, weights)


def export_run(
    source: str | Path,
    classifier: Classifier,
    out: str | Path,
    iterations: int = 8,
    tolerance: float = 0.0,
    references: list[Reference] | None = None,
    denoised_references: DenoisedReferenceSettings | None = DenoisedReferenceSettings(),
    thresholds: dict[str, float] | None = None,
) -> Path:
    """Write ``out``. With ``denoised_references`` (the default), the classifier also gets the reference
    environments as this denoiser leaves them (see icephase_lmp.denoised_references); None: ideal only.
    ``thresholds`` (e.g. {"denoised/euclidean": 7.7}) are set last, for this exact reference set."""
    module, form, config, training, weights = _denoiser(Path(source))
    metadata = build_metadata(config, classifier, iterations, tolerance, training)
    metadata["denoiser_module"] = form
    model = IcephaseModel(module, classifier, metadata, Path(out), weights)
    if denoised_references is not None:
        n = add_denoised_references(model, references, denoised_references, progress=True)
        print(f"added {n} denoised reference environments (sigma up to the training's sigma_max)")
    classifier.thresholds.update(thresholds or {})
    metadata["thresholds"] = classifier.thresholds
    return save_model(out, module, classifier, metadata, weights)
