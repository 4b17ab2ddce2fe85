"""How wide a band of ice next to liquid is labelled liquid, for several SOAP cutoffs.

Data: our own TIP4P/Ice LAMMPS runs (scripts/make_md_snapshots.py): bulk ice Ih at 250 K, liquid at 300 K,
and an ice Ih / liquid coexistence box at 250 K (half of an Ih box melted, basal faces along z).

For each SOAP cutoff: fit the classifier on the references (as `icephase export` does: ideal environments
plus those the model's denoiser leaves from noisy references; `--ideal-references-only` leaves the latter
out), calibrate the
threshold on bulk Ih + liquid (valley midpoint, `icephase calibrate`'s rule), then label the coexistence
frames after denoising. Ground truth is the set of molecules that were kept crystalline; the profile is the
fraction of them labelled ice against their depth below the interface plane. The band width is the depth
at which that fraction first reaches 90% and stays there. The bulk (deeper than 10 A) must stay at 100%.

Usage: python benchmarks/interface_width.py [--md runs/md] [--r-cut 5 6 8] [--frames ::2]
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.calibrate import calibrate_threshold
from icephase_lmp.classifier import FitSettings, SoapSettings, fit_classifier
from icephase_lmp.denoise import denoise
from icephase_lmp.denoised_references import add_denoised_references
from icephase_lmp.model_file import load_model
from icephase_lmp.phases import LIQUID
from icephase_lmp.references import load_references
from icephase_lmp.trajectory import parse_frames, read_frames

REPO = Path(__file__).resolve().parents[1]
BIN = 1.0  # A


def denoised_frames(model, path: Path, frames: slice):
    out = []
    for f in read_frames(path, frames=frames):
        d = denoise(model.offline_denoiser(), f.positions, f.cell, f.pbc, model.r_max, model.iterations)
        out.append((f, d.positions))
    return out


def depth_below_interface(frame, info: dict, frame_no: int) -> np.ndarray:
    """Signed depth of each O below the nearer interface plane (positive inside the initial ice slab)."""
    co = info["coexistence"]
    drift = co["ice_centre_z_per_frame"][frame_no] - co["ice_centre_z_per_frame"][0]
    lo, hi = (z + drift for z in co["interface_z"])
    z = frame.positions[:, 2]
    return np.minimum(z - lo, hi - z)


def profile(clf, threshold: float, coex, frame_numbers, info: dict, ice_ids: set) -> tuple:
    """(ice-labelled fraction per 1 A of depth, band width, bulk ice fraction, liquid-side liquid fraction)."""
    depths, is_ice_label, truth = [], [], []
    for (f, p), n in zip(coex, frame_numbers):
        res = clf.classify(p, f.cell, f.pbc, threshold=threshold)
        depths.append(depth_below_interface(f, info, n))
        is_ice_label.append(res.codes != LIQUID)
        truth.append(np.isin(f.atom_ids, list(ice_ids)))
    depth, label, was_ice = (np.concatenate(x) for x in (depths, is_ice_label, truth))
    inside = was_ice & (depth > 0)
    edges = np.arange(0, 20 + BIN, BIN)
    prof = np.array([label[inside & (depth >= a) & (depth < a + BIN)].mean()
                     if np.any(inside & (depth >= a) & (depth < a + BIN)) else np.nan for a in edges[:-1]])
    ok = prof >= 0.9
    band = next((edges[i] for i in range(len(prof)) if np.all(ok[i:][~np.isnan(prof[i:])])), np.nan)
    bulk = label[inside & (depth > 10)].mean()
    liq_side = (~label[~was_ice & (depth < -3)]).mean()  # melted molecules 3 A beyond the plane
    return prof, band, bulk, liq_side


def print_row(head: str, result: tuple) -> None:
    prof, band, bulk, liq_side = result
    print(f"{head} {100 * bulk:9.2f} {band:12.1f} {100 * liq_side:12.2f}  " + " ".join(f"{x:4.2f}" for x in prof[:10]),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--md", type=Path, default=REPO / "runs" / "md")
    ap.add_argument("--r-cut", type=float, nargs="+", default=[5.0, 6.0, 8.0])
    ap.add_argument("--frames", default="::2")
    ap.add_argument("--ideal-references-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    model = load_model(args.model)
    frames = parse_frames(args.frames)
    info = json.loads((args.md / "coexistence_250K.json").read_text())
    ice_ids = set(info["coexistence"]["ice_oxygen_ids"])
    print(f"model {model.path}; denoising bulk Ih, liquid and coexistence frames ...", flush=True)
    ice = denoised_frames(model, args.md / "ice_ih_250K.lammpstrj", frames)
    liquid = denoised_frames(model, args.md / "liquid_300K.lammpstrj", slice(None))
    coex = denoised_frames(model, args.md / "coexistence_250K.lammpstrj", frames)
    frame_numbers = list(range(*frames.indices(len(info["coexistence"]["ice_centre_z_per_frame"]))))
    refs = load_references(None)
    print(f"\n{'r_cut':>5s} {'reach':>5s} {'threshold':>9s} {'gap%':>6s} {'bulk ice%':>9s} {'band 90% (A)':>12s} "
          f"{'liquid side%':>12s}  ice-labelled fraction by depth (A): " + " ".join(f"{d:>4.0f}" for d in range(0, 10)))
    for r_cut in args.r_cut:
        soap = SoapSettings(r_cut=r_cut)
        clf = fit_classifier(refs, soap, FitSettings())
        if not args.ideal_references_only:
            add_denoised_references(replace(model, classifier=clf), refs)
        dist = lambda fs: np.concatenate([clf.classify(p, f.cell, f.pbc, threshold=1e9).distances for f, p in fs])
        cal = calibrate_threshold(dist(ice), dist(liquid))
        print_row(f"{r_cut:5.1f} {soap.reach:5.1f} {cal.threshold:9.4g} {100 * cal.relative_gap:6.1f}",
                  profile(clf, cal.threshold, coex, frame_numbers, info, ice_ids))
    clf = model.classifier
    threshold = clf.threshold(clf.metric, denoised=True)
    print_row(f"{clf.soap.r_cut:5.1f} {clf.soap.reach:5.1f} {threshold:9.4g} {'model':>6s}",
              profile(clf, threshold, coex, frame_numbers, info, ice_ids))
    print("\n(the last row: the model file itself, with its own reference set and calibrated threshold)")
    print("band 90%: depth below the interface plane beyond which >= 90% of the initially crystalline molecules "
          "are labelled ice (one molecular layer of Ih along c is ~3.7 A);\nliquid side: melted molecules more "
          "than 3 A beyond the plane labelled liquid; gap%: (best liquid - worst ice) / threshold on bulk data.")


if __name__ == "__main__":
    main()
