"""What the LAMMPS plugin calls inside its embedded Python interpreter.

The plugin denoises with libtorch itself, then hands each rank's atoms to :func:`classify` as one open
cloud: the rank's local oxygens first (the centres), then its ghost oxygens (their surroundings). No
periodic box is involved: the ghost atoms already sit at their image positions. Any exception raised here
is turned into a LAMMPS error by the plugin, on every rank.
"""

from __future__ import annotations

import numpy as np

from .classifier import Classifier
from .denoise import limits as denoise_limits
from .model_file import read_classifier, read_metadata
from .phases import MIN_OXYGEN_DISTANCE, TOO_CLOSE_DISTANCE

_CLASSIFIERS: dict[str, Classifier] = {}


def model_metadata_json(model_path: str) -> str:
    """The model's metadata as JSON text, for the plugin's init-time log and checks.

    ``read_metadata`` validates it and checks the archive's checksums. Added under ``"policy"``: the
    limits that the compute applies exactly as the offline pipeline does, from their one definition
    (the oxygen distance below which a pair is not water, and the denoising step limits)."""
    import json

    meta = read_metadata(model_path)
    meta["policy"] = {"min_oxygen_distance": MIN_OXYGEN_DISTANCE, "too_close_distance": TOO_CLOSE_DISTANCE,
                      **denoise_limits()}
    return json.dumps(meta)


def classify(
    model_path: str, positions: np.ndarray, n_local: int, metric: str, threshold: float, denoised: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Phase codes (int32) and distances (float64) of the first ``n_local`` atoms of ``positions``.

    ``denoised``: the positions come from the denoiser (compare with every reference environment), or are
    raw (iterations 0: the ideal reference environments only, as ``icephase classify --no-denoise``)."""
    clf = _CLASSIFIERS.get(model_path)
    if clf is None:
        clf = _CLASSIFIERS[model_path] = read_classifier(model_path)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if not 0 <= n_local <= len(positions):
        raise ValueError(f"n_local={n_local} is outside 0..{len(positions)}")
    result = clf.classify(positions, cell=None, centers=np.arange(n_local), metric=metric, threshold=threshold, denoised=denoised)
    return result.codes.astype(np.int32), result.distances.astype(np.float64)
