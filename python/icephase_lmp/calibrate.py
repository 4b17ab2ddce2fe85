"""Choosing the ice/liquid threshold from the histogram of distances, as the paper does (Fig. S2).

Given the distances of atoms known to be ice and of atoms known to be liquid, the threshold is the middle
of the valley between the ice peak and the liquid distribution: when the two are separated, the midpoint
of the empty gap between the largest ice distance and the smallest liquid distance; when they overlap,
the distance that misclassifies the fewest atoms (balanced between the two classes), reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CalibrationError


@dataclass
class Calibration:
    """A threshold and how well it separates the ice and liquid distances (all in the metric's units)."""

    threshold: float
    ice_max: float  # worst (largest) ice distance
    liquid_min: float  # best (smallest) liquid distance
    separated: bool
    ice_errors: int  # ice atoms above the threshold (would be called liquid)
    liquid_errors: int  # liquid atoms at or below the threshold (would be called ice)

    @property
    def gap(self) -> float:
        """Width of the empty band between ice and liquid (negative when they overlap)."""
        return self.liquid_min - self.ice_max

    @property
    def relative_gap(self) -> float:
        """The gap as a fraction of the threshold (NaN for a zero threshold)."""
        return self.gap / self.threshold if self.threshold else float("nan")

    def summary(self) -> str:
        """One line for the terminal: threshold, worst ice, best liquid, gap, misclassified atoms."""
        state = "separated" if self.separated else "OVERLAPPING"
        return (
            f"threshold {self.threshold:.4g} ({state}): worst ice {self.ice_max:.4g}, best liquid "
            f"{self.liquid_min:.4g}, gap {self.gap:.4g} ({100 * self.relative_gap:.1f}% of the threshold); "
            f"misclassified: {self.ice_errors} ice, {self.liquid_errors} liquid"
        )


def calibrate_threshold(ice: np.ndarray, liquid: np.ndarray) -> Calibration:
    """The liquid threshold from distances of atoms known to be ice and atoms known to be liquid.

    Separated distributions: the midpoint of the empty gap between the largest ice distance and the
    smallest liquid one. Overlapping ones: the candidate that minimises the balanced error rate (the
    fraction of ice above it plus the fraction of liquid at or below it).

    Parameters
    ----------
    ice, liquid : array_like of float, any shape
        Distances to the nearest reference environment (``FrameResult.distances``), in the units of the
        classifier's metric (PCA-space length for ``euclidean``, 1 - cosine similarity for ``cosine``);
        flattened.

    Returns
    -------
    Calibration
        The threshold, whether the two are separated, and the atoms it misclassifies.

    Raises
    ------
    CalibrationError
        When ``ice`` or ``liquid`` is empty.
    """
    ice = np.asarray(ice, dtype=np.float64).ravel()
    liquid = np.asarray(liquid, dtype=np.float64).ravel()
    if ice.size == 0 or liquid.size == 0:
        raise CalibrationError("calibration needs distances of both ice atoms and liquid atoms")
    ice_max, liquid_min = float(ice.max()), float(liquid.min())
    if ice_max < liquid_min:
        threshold = 0.5 * (ice_max + liquid_min)
    else:
        # Overlap: scan candidate thresholds, minimise the balanced error rate.
        candidates = np.unique(np.concatenate([ice, liquid]))
        ice_sorted, liq_sorted = np.sort(ice), np.sort(liquid)
        ice_above = ice.size - np.searchsorted(ice_sorted, candidates, side="right")
        liq_below = np.searchsorted(liq_sorted, candidates, side="right")
        cost = ice_above / ice.size + liq_below / liquid.size
        threshold = float(candidates[np.argmin(cost)])
    return Calibration(
        threshold=threshold,
        ice_max=ice_max,
        liquid_min=liquid_min,
        separated=ice_max < liquid_min,
        ice_errors=int((ice > threshold).sum()),
        liquid_errors=int((liquid <= threshold).sum()),
    )


def plot_histogram(
    ice: np.ndarray, liquid: np.ndarray, calibration: Calibration, path: str | Path, metric: str, title: str = ""
) -> Path:
    """The histogram of distances with the threshold (the paper's Fig. S2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .phases import LIQUID_COLOR

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hi = max(float(np.max(ice)), float(np.max(liquid)))
    bins = np.linspace(0.0, hi * 1.02, 120)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.hist(ice, bins=bins, color="tab:blue", alpha=0.7, label=f"ice ({len(ice)} atoms)")
    ax.hist(liquid, bins=bins, color=tuple(0.6 * c for c in LIQUID_COLOR), alpha=0.7, label=f"liquid ({len(liquid)} atoms)")
    ax.axvline(calibration.threshold, color="k", ls="--", label=f"threshold {calibration.threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel(f"{metric} distance to the nearest reference environment")
    ax.set_ylabel("atoms")
    ax.set_title(title or f"gap {calibration.gap:.3g} ({100 * calibration.relative_gap:.1f}% of threshold)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
