"""Reference environments as the model's own denoiser leaves them.

Why. The denoiser is trained to map noisy ideal crystals back to the ideal ones, but it does not get there
exactly: on thermally displaced structures it stops a little short (0.03-0.1 A RMS on ice II, III, VI and
sI), and for the more intricate phases (ice III most of all) a few molecules end up in a systematically
distorted environment. Measured against the ideal environments only, those molecules score as far from
every reference as some liquid molecules do. So the classifier also keeps, as references, the environments
that the denoiser itself produces from each reference with Gaussian noise over the whole range it was
trained for (sigma up to the training's sigma_max): denoised input is then compared with what the denoiser
makes of that phase, not only with the ideal it aims at. Nothing here looks at MD data; it uses only the
reference structures and the model.

The denoised environments are many (one per atom per noisy copy) and largely redundant: they are thinned to
a cover, keeping an environment only when no kept one of the same phase lies within ``cover_radius`` (in
the classifier's PCA space, the units of the Euclidean threshold), so that a distance measured to the
thinned set is at most ``cover_radius`` above the distance to the full set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .denoise import denoise
from .errors import ClassifierError
from .model_file import IcephaseModel, training_reference_specs
from .references import Reference, load_references, supercell


@dataclass(frozen=True)
class DenoisedReferenceSettings:
    """How many noisy copies of each reference are denoised, at which noise levels, and how they are thinned."""

    #: noise levels (A); None: 0.05, 0.10, ... up to the sigma_max the denoiser was trained with
    sigmas: tuple[float, ...] | None = None
    #: independent noisy copies per reference and noise level
    copies: int = 3
    #: supercells at least this wide (A), so that every copy holds a few hundred environments
    min_width: float = 16.0
    #: thinning radius in the classifier's PCA space (see the module docstring)
    cover_radius: float = 1.0
    seed: int = 0


def noise_levels(model: IcephaseModel, settings: DenoisedReferenceSettings) -> tuple[float, ...]:
    """The noise sigmas (Angstrom): the settings' own, else 0.05 A steps up to the training's ``sigma_max``."""
    if settings.sigmas is not None:
        return tuple(settings.sigmas)
    sigma_max = float(model.metadata.get("training", {}).get("config", {}).get("sigma_max", 0.35))
    return tuple(np.round(np.arange(0.05, sigma_max + 1e-9, 0.05), 4))


def cover(features: np.ndarray, radius: float) -> np.ndarray:
    """Indices of a subset such that every row lies within ``radius`` (Euclidean) of a kept row (greedy)."""
    kept: list[int] = []
    kept_rows = np.zeros((0, features.shape[1]))
    r2 = radius * radius
    for i, x in enumerate(features):
        if len(kept) == 0 or np.min(((kept_rows - x) ** 2).sum(axis=1)) > r2:
            kept.append(i)
            kept_rows = np.vstack([kept_rows, x])
    return np.asarray(kept, dtype=np.int64)


def denoised_reference_features(
    model: IcephaseModel,
    references: list[Reference],
    settings: DenoisedReferenceSettings = DenoisedReferenceSettings(),
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(reduced features, codes) of the references after noise + the model's denoiser, thinned to a cover."""
    from tqdm import tqdm

    clf = model.classifier
    rng = np.random.default_rng(settings.seed)
    sigmas = noise_levels(model, settings)
    jobs = [(code, ref, s) for code, ref in enumerate(references, start=1) for s in sigmas]
    per_code: dict[int, list[np.ndarray]] = {}
    for code, ref, sigma in tqdm(jobs, desc="denoised references", disable=not progress):
        atoms = supercell(ref.atoms, settings.min_width)
        cell = atoms.cell.array
        for _ in range(settings.copies):
            noisy = atoms.positions + rng.normal(0.0, sigma, atoms.positions.shape)
            result = denoise(model.denoiser, noisy, cell, (True, True, True), model.r_max, model.iterations,
                             model.tolerance)
            per_code.setdefault(code, []).append(clf.reduce(clf.soap_features(result.positions, cell)))
    features, codes = [], []
    for code, parts in per_code.items():
        x = np.concatenate(parts)
        keep = cover(x, settings.cover_radius)
        features.append(x[keep])
        codes.append(np.full(len(keep), code, dtype=np.int32))
    return np.concatenate(features), np.concatenate(codes)


def add_denoised_references(
    model: IcephaseModel,
    references: list[Reference] | None = None,
    settings: DenoisedReferenceSettings = DenoisedReferenceSettings(),
    progress: bool = False,
) -> int:
    """Replace the model classifier's denoised reference environments with fresh ones; returns how many.

    ``references`` default to those the model was trained on (its metadata), else the seven built-in ones.
    The denoised thresholds are dropped: they were calibrated against the old reference set.
    """
    clf = model.classifier
    if references is None:
        references = load_references(training_reference_specs(model.metadata))
    if [r.name for r in references] != list(clf.names):
        raise ClassifierError(
            f"references {[r.name for r in references]} do not match the classifier's phases {clf.names}"
        )
    ideal = ~clf.ref_denoised
    clf.ref_features, clf.ref_codes, clf.ref_denoised = clf.ref_features[ideal], clf.ref_codes[ideal], clf.ref_denoised[ideal]
    features, codes = denoised_reference_features(model, references, settings, progress)
    clf.add_references(features, codes, denoised=True)
    for key in [k for k in clf.thresholds if k.startswith("denoised/")]:
        del clf.thresholds[key]
    return len(codes)
