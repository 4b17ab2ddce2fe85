"""``icephase export``: a trained denoiser + a fitted classifier -> one ``model.pth``.

The denoiser comes from a training run folder (its checkpoint) or from an existing model file (re-export:
same denoiser weights, the classifier fitted afresh, e.g. with another SOAP cutoff).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from .classifier import Classifier
from .errors import ModelFileError
from .denoised_references import DenoisedReferenceSettings, add_denoised_references
from .denoiser_network import DenoiserConfig, script_denoiser
from .model_file import IcephaseModel, build_metadata, load_model, read_metadata, save_model, training_reference_specs
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


def _denoiser(source: Path) -> tuple[torch.jit.ScriptModule, DenoiserConfig, dict, dict | None]:
    """The denoiser of a model file or a run folder: module, architecture, training record, and the weights
    of a module that is already frozen (None: the module holds them)."""
    if source.is_file():
        model = load_model(source)
        return (model.denoiser, DenoiserConfig(**model.metadata["denoiser"]), model.metadata.get("training", {}),
                model.weights)
    if not (source / "checkpoint.pt").is_file():
        raise ModelFileError(f"{source} holds no checkpoint.pt: train first with `icephase train {source}`")
    eager, config = load_trained(source)
    state = read_checkpoint(source / "checkpoint.pt")
    return (script_denoiser(eager), config.model, {"config": asdict(config), "steps_done": int(state["step"])},
            None)


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
    scripted, config, training, weights = _denoiser(Path(source))
    metadata = build_metadata(config, classifier, iterations, tolerance, training)
    model = IcephaseModel(scripted, classifier, metadata, Path(out), weights)
    if denoised_references is not None:
        n = add_denoised_references(model, references, denoised_references, progress=True)
        print(f"added {n} denoised reference environments (sigma up to the training's sigma_max)")
    classifier.thresholds.update(thresholds or {})
    metadata["thresholds"] = classifier.thresholds
    return save_model(out, scripted, classifier, metadata, weights)
