"""A first measurement for "other crystal" (issue 14): do the molecules that the pipeline calls liquid have
neighbours with the same environment?

A crystal repeats itself: after denoising, a molecule of a crystal that has no reference (GCIceNet's phase T)
still finds molecules with its own environment among its neighbours, while in a liquid every environment
differs. For every molecule the default pipeline labels liquid, this prints the k-th smallest PCA-space
distance (k = 1, 2, 3) between its environment and those of the molecules within RADIUS (8 A) of it (denoised
positions, the shipped model's SOAP/PCA), as percentiles, and the share of them below the model's own
ice/liquid threshold (denoised/euclidean).

Usage: python benchmarks/repeated_environments.py [--data DIR] [--frames 0:11:5] [--extra NAME=DUMP ...]
  (--extra: more trajectories, e.g. our own liquids: liq300=runs/md/liquid_300K.lammpstrj)
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.geometry import neighbor_edges
from icephase_lmp.other_crystal import RADIUS
from icephase_lmp.phases import LIQUID
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.trajectory import Selection, parse_frames, read_frames

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"
SHELL = RADIUS  # A: the radius of the other-crystal step (other_crystal.py), one place for it
KS = (1, 2, 3)


def kth_neighbour_distances(positions, cell, pbc, reduced: np.ndarray) -> np.ndarray:
    """(N, len(KS)): k-th smallest PCA-space distance to the molecules within SHELL (inf if fewer)."""
    edges, _ = neighbor_edges(positions, cell, pbc, SHELL)
    d = np.linalg.norm(reduced[edges[0]] - reduced[edges[1]], axis=1)
    order = np.lexsort((d, edges[0]))
    centre, d = edges[0][order], d[order]
    start = np.searchsorted(centre, np.arange(len(positions)))
    out = np.full((len(positions), len(KS)), np.inf)
    for col, k in enumerate(KS):
        idx = start + k - 1
        ok = idx < len(centre)
        ok[ok] &= centre[idx[ok]] == np.flatnonzero(ok)
        out[ok, col] = d[idx[ok]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--frames", default="0:11:5")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=DUMP")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    pipe = Pipeline.from_path(None, other_crystal=False)  # what the classifier and boundary step leave liquid
    clf = pipe.classifier
    threshold = clf.thresholds["denoised/euclidean"]
    sources = [(tag, args.data / f"md_{tag}_10frame.xtc", args.data / f"md_{tag}.tpr", Selection(name="OW"),
                parse_frames(args.frames)) for tag in ("w", "T")]
    for spec in args.extra:
        name, path = spec.split("=", 1)
        sources.append((name, Path(path), None, None, slice(-2, None)))
    print(f"molecules labelled liquid; k-th smallest PCA distance to an environment within {SHELL} A; "
          f"threshold {threshold:.2f}")
    print(f"{'system':8s} {'k':>2s} {'liquid-labelled':>15s}   p0    p0.1  p1    p50   p95   p99   below threshold")
    for tag, path, top, select, frames in sources:
        dists, liquid = [], []
        for frame in read_frames(path, top, select, frames):
            result = pipe.run(frame.positions, frame.cell, frame.pbc)
            reduced = clf.reduce(clf.soap_features(result.positions, frame.cell, frame.pbc))
            dists.append(kth_neighbour_distances(result.positions, frame.cell, frame.pbc, reduced))
            liquid.append(result.codes == LIQUID)
        d, liq = np.concatenate(dists)[np.concatenate(liquid)], np.concatenate(liquid)
        for col, k in enumerate(KS):
            q = np.percentile(d[:, col], [0, 0.1, 1, 50, 95, 99]) if len(d) else np.full(6, np.nan)
            below = 100 * (d[:, col] < threshold).mean() if len(d) else float("nan")
            print(f"{tag:8s} {k:2d} {len(d):7d} of {len(liq):5d} " + " ".join(f"{v:5.2f}" for v in q)
                  + f"   {below:6.2f}%")


if __name__ == "__main__":
    main()
