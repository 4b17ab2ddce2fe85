"""``icephase export``: a trained denoiser + a fitted classifier -> one ``model.pth``.

The denoiser comes from a training run folder (its checkpoint) or from an existing model file (re-export:
same denoiser weights, the classifier fitted afresh, e.g. with another SOAP cutoff).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

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


class StoredDenoiser(NamedTuple):
    """A denoiser as a model file stores it."""

    module: torch.jit.ScriptModule  # frozen
    form: str  # "compact" or "nequip" (denoiser_network.inference_module)
    config: DenoiserConfig
    training: dict
    weights: dict[str, np.ndarray]  # the training network's
    compact: dict[str, np.ndarray] | None  # the compact form's constants (None: "nequip")


def _denoiser(source: Path) -> StoredDenoiser:
    """The denoiser of a model file or a run folder as a model file stores it."""
    if source.is_file():
        return _model_denoiser(load_model(source))
    if not (source / "checkpoint.pt").is_file():
        raise ModelFileError(f"{source} holds no checkpoint.pt: train first with `icephase train {source}`")
    eager, run_config = load_trained(source)
    training = {"config": asdict(run_config), "steps_done": int(read_checkpoint(source / "checkpoint.pt")["step"])}
    module, form, compact = inference_module(eager, run_config.model)
    return StoredDenoiser(module, form, run_config.model, training, state_arrays(eager), compact)


def _model_denoiser(model: IcephaseModel) -> StoredDenoiser:
    """As :func:`_denoiser`, for a loaded model file: its network rebuilt from its weights."""
    config = DenoiserConfig(**model.metadata["denoiser"])
    weights = model.network_weights()
    module, form, compact = inference_module(denoiser_from_weights(config, weights), config)
    return StoredDenoiser(module, form, config, model.metadata.get("training", {}), weights, compact)


def recompile_denoiser(source: str | Path, out: str | Path) -> Path:
    """Write ``out``: the model file ``source`` with its denoiser stored afresh by this version (the compact
    form where there is one), keeping its classifier, thresholds and every other setting. The same weights,
    so the same eps to float32 rounding (``icephase export --keep-classifier``)."""
    source = Path(source)
    if not source.is_file():
        raise ModelFileError(f"{source}: --keep-classifier takes a model file, not a training run folder")
    model = load_model(source)
    stored = _model_denoiser(model)
    metadata = dict(model.metadata, denoiser_module=stored.form)
    return save_model(out, stored.module, model.classifier, metadata, stored.weights, stored.compact)


def add_compact_constants(source: str | Path, out: str | Path) -> Path:
    """Write ``out``: the model file ``source`` as it is (its TorchScript denoiser bit for bit), plus the compact
    form's constants (``compact_denoiser.npz``) that the offline pipeline and the LAMMPS compute run on CPU with
    compiled message sums. The constants are read off the stored weights again (``inference_module``) and
    agree with those folded into the TorchScript module to float32 rounding; the TorchScript module is kept
    bit for bit, so that the GPU path and every figure measured with it stay exactly as they were. (``recompile_denoiser`` stores the denoiser
    afresh as well: another CPU may fold its constants ~1e-7 differently.)"""
    model = load_model(source)
    if model.metadata.get("denoiser_module") != "compact":
        raise ModelFileError(f"{source}: its denoiser is not in the compact form; use `icephase export "
                             "--keep-classifier` to store it afresh")
    stored = _model_denoiser(model)
    return save_model(out, model.denoiser, model.classifier, model.metadata, model.network_weights(),
                      stored.compact)


def configure_boundary(source: str | Path, out: str | Path, changes: dict[str, str]) -> Path:
    """Write ``out``: the model file ``source`` with the boundary step's settings ``changes`` (field name of
    :class:`~icephase_lmp.boundary.BoundarySettings` -> value as text), its denoiser (the TorchScript module,
    bit for bit, and the compact constants), classifier and thresholds kept (``icephase configure``)."""
    from dataclasses import fields, replace

    from .boundary import BoundarySettings
    from .errors import ClassifierError

    model = load_model(source)
    kinds = {f.name: f.type for f in fields(BoundarySettings)}
    typed = {}
    for key, text in changes.items():
        if key not in kinds:
            raise ClassifierError(f"--boundary {key}=...: no such setting; the boundary step has "
                                  f"{', '.join(kinds)}")
        if kinds[key] in (bool, "bool"):
            switch = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}
            if text.lower() not in switch:
                raise ClassifierError(f"--boundary {key}={text}: give true or false")
            typed[key] = switch[text.lower()]
            continue
        number = int if kinds[key] in (int, "int") else float
        try:
            typed[key] = number(text)
        except ValueError:
            what = "a whole number" if number is int else "a number"
            raise ClassifierError(f"--boundary {key}={text}: give {what}") from None
    try:
        classifier = replace(model.classifier, boundary=replace(model.classifier.boundary, **typed))
    except ValueError as exc:  # the settings' own range checks, and the classifier's (radius within its reach)
        raise ClassifierError(f"--boundary: {exc}") from None
    metadata = dict(model.metadata, boundary=classifier.boundary.to_dict())
    return save_model(out, model.denoiser, classifier, metadata, model.network_weights(), model.compact)


def add_site_table(source: str | Path, out: str | Path) -> Path:
    """Write ``out``: the model file ``source`` with the censuses' tables (``site_census``, ``ring_census``)
    fitted from the built-in references of its phases, everything else kept as in :func:`configure_boundary`.
    For model files made before the censuses existed (``icephase export`` fits the tables with the
    classifier)."""
    from dataclasses import replace

    from .errors import ClassifierError, ReferenceStructureError
    from .references import builtin_reference
    from .ring_census import fit_ring_table
    from .site_census import fit_site_table

    model = load_model(source)
    try:
        references = [builtin_reference(name) for name in model.classifier.names]
    except ReferenceStructureError as exc:
        raise ClassifierError(f"{source}: --site-table fits the sites of built-in phases only ({exc}); export the "
                              "model again from its training run to fit them from its own references") from None
    sites = fit_site_table(model.classifier, references)
    classifier = replace(model.classifier, sites=sites, rings=fit_ring_table(references, sites.counted_codes()))
    return save_model(out, model.denoiser, classifier, model.metadata, model.network_weights(), model.compact)


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
    stored = _denoiser(Path(source))
    module, weights = stored.module, stored.weights
    metadata = build_metadata(stored.config, classifier, iterations, tolerance, stored.training)
    metadata["denoiser_module"] = stored.form
    model = IcephaseModel(module, classifier, metadata, Path(out), weights, stored.compact)
    if denoised_references is not None:
        n = add_denoised_references(model, references, denoised_references, progress=True)
        print(f"added {n} denoised reference environments (sigma up to the training's sigma_max)")
    classifier.thresholds.update(thresholds or {})
    metadata["thresholds"] = classifier.thresholds
    return save_model(out, module, classifier, metadata, weights, stored.compact)
