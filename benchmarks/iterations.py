"""How many denoising iterations are needed: the ice/liquid margin against the number of iterations.

Data: our own TIP4P/Ice MD (runs/md: ices Ih, Ic, sI, II, III, VI at 250 K; liquid at 300 K) plus the seven references
with Gaussian noise of 0.15 A (twice the local distortion measured in those runs), i.e. the
same data `models/make_shipped_model.sh` calibrates on; the GCIceNet test data is not used.

For each iteration count: worst ice distance, best liquid distance, the valley threshold and the gap as a
fraction of it, and whether every ice atom's nearest reference is its own phase (noisy references only,
where the phase is known).

Usage: python benchmarks/iterations.py [--model M] [--md runs/md] [--max 12]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.calibrate import calibrate_threshold
from icephase_lmp.denoise import denoise
from icephase_lmp.model_file import load_model
from icephase_lmp.references import builtin_references, supercell
from icephase_lmp.trajectory import read_frames

REPO = Path(__file__).resolve().parents[1]
#: i.i.d. noise that matches twice the first-shell O-O fluctuation of our Ih at 250 K (see models/make_shipped_model.sh)
THERMAL_SIGMA = 0.15


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--md", type=Path, default=REPO / "runs" / "md")
    ap.add_argument("--max", type=int, default=12)
    ap.add_argument("--frames", default="::4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    from icephase_lmp.trajectory import parse_frames

    model = load_model(args.model)
    clf = model.classifier
    rng = np.random.default_rng(0)
    systems = []  # (kind, true code or None, positions, cell)
    for ref_code, ref in enumerate(builtin_references(), start=1):
        atoms = supercell(ref.atoms, 24.0)
        systems.append(("ice", ref_code, atoms.positions + rng.normal(0, THERMAL_SIGMA, atoms.positions.shape),
                        atoms.cell.array))
    names = ("ice_ih_250K", "ice_ic_250K", "sI_250K", "ice_ii_250K", "ice_iii_250K", "ice_vi_250K", "liquid_300K")
    for name in names:
        kind = "liquid" if name.startswith("liquid") else "ice"
        for f in read_frames(args.md / f"{name}.lammpstrj", frames=parse_frames(args.frames)):
            systems.append((kind, None, f.positions, f.cell))
    print(f"{'iterations':>10s} {'worst ice':>9s} {'best liquid':>11s} {'threshold':>9s} {'gap %':>6s} "
          f"{'nearest right (noisy refs) %':>28s}")
    positions = [s[2] for s in systems]
    done = 0
    for target in [0, 1, 2, 3, 4, 5, 6, 8, 10, 12]:
        if target > args.max:
            break
        for k, (kind, code, _, cell) in enumerate(systems):
            if target > done:
                positions[k] = denoise(model.offline_denoiser(), positions[k], cell, (True,) * 3, model.r_max,
                                       target - done).positions
        done = target
        ice, liquid, right, total = [], [], 0, 0
        for (kind, code, _, cell), pos in zip(systems, positions):
            # 0 iterations is the SOAP-only pipeline: ideal reference environments only
            res = clf.classify(pos, cell, (True,) * 3, threshold=1e9, denoised=target > 0)
            (ice if kind == "ice" else liquid).append(res.distances)
            if code is not None:
                right += int(np.count_nonzero(res.nearest == code))
                total += len(res.nearest)
        cal = calibrate_threshold(np.concatenate(ice), np.concatenate(liquid))
        print(f"{target:10d} {cal.ice_max:9.3f} {cal.liquid_min:11.3f} {cal.threshold:9.3f} "
              f"{100 * cal.relative_gap:6.1f} {100 * right / total:28.2f}", flush=True)


if __name__ == "__main__":
    main()
