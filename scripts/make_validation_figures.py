"""Figures for docs/validation.md from the GCIceNet test data and the shipped model.

- docs/figures/pca_before_after.png: the first two PCA components of every oxygen's SOAP before and after
  denoising, coloured by true phase, reference environments as black crosses (the paper's Fig. 2).
- docs/figures/distance_histogram_<metric>.png: distances to the nearest reference after denoising, ice vs
  liquid, with the model's threshold (the paper's Fig. S2).

Usage: python scripts/make_validation_figures.py [--model M] [--frames 0:11:5] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.calibrate import calibrate_threshold, plot_histogram
from icephase_lmp.classifier import nearest_reference
from icephase_lmp.denoise import denoise
from icephase_lmp.model_file import load_model
from icephase_lmp.phases import LIQUID_COLOR, builtin_phase
from icephase_lmp.trajectory import Selection, parse_frames, read_frames

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gcicenet"
SYSTEMS = {"1h": "Ih", "1c": "Ic", "2": "II", "3": "III", "6": "VI", "7": "VII", "sI": "sI", "w": "liquid"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--frames", default="0:11:5")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = load_model(args.model)
    clf = model.classifier
    args.out.mkdir(parents=True, exist_ok=True)
    raw, den = {}, {}
    for tag, name in SYSTEMS.items():
        r, d = [], []
        for frame in read_frames(args.data / f"md_{tag}_10frame.xtc", args.data / f"md_{tag}.tpr",
                                 Selection(name="OW"), parse_frames(args.frames)):
            r.append(clf.reduce(clf.soap_features(frame.positions, frame.cell, frame.pbc)))
            dn = denoise(model.denoiser, frame.positions, frame.cell, frame.pbc, model.r_max, model.iterations)
            d.append(clf.reduce(clf.soap_features(dn.positions, frame.cell, frame.pbc)))
        raw[name], den[name] = np.concatenate(r), np.concatenate(d)
        print(f"{name}: {len(raw[name])} oxygens", flush=True)

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), sharex=True, sharey=True)
    for ax, feats, title in ((axes[0], raw, "MD snapshots (raw)"), (axes[1], den, "after denoising")):
        for name, f in feats.items():
            phase = builtin_phase(name)
            color = phase.color if phase else tuple(0.6 * c for c in LIQUID_COLOR)
            ax.scatter(f[:, 0], f[:, 1], s=2, alpha=0.4, color=color, label=name, rasterized=True)
        ideal, _ = clf.references(denoised=False)
        ax.scatter(ideal[:, 0], ideal[:, 1], marker="x", color="k", s=25, label="ideal references")
        ax.set_title(title)
        ax.set_xlabel("PC 1")
    axes[0].set_ylabel("PC 2")
    axes[1].legend(markerscale=5, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(args.out / "pca_before_after.png", dpi=110)
    plt.close(fig)
    print(f"wrote {args.out / 'pca_before_after.png'}")

    for metric in ("euclidean", "cosine"):
        refs, _ = clf.references(denoised=True)
        dist = {n: nearest_reference(f, refs, metric)[1] for n, f in den.items()}
        ice = np.concatenate([d for n, d in dist.items() if n != "liquid"])
        cal = calibrate_threshold(ice, dist["liquid"])
        key = f"denoised/{metric}"
        if key in clf.thresholds:
            cal.threshold = clf.thresholds[key]
        path = plot_histogram(ice, dist["liquid"], cal, args.out / f"distance_histogram_{metric}.png", metric,
                              title=f"after denoising: {metric}, threshold {cal.threshold:.3g}")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
