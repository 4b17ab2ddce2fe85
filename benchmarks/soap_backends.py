"""Our SOAP kernel against DScribe's extension on real frames: same labels? how much cheaper?

For frames 0, 5, 10 of each GCIceNet system and the last frame of some of our own TIP4P/Ice runs
(coexistence, ice V, sH, the 220 K liquid), the shipped pipeline runs twice, SOAP computed once by each
backend (icephase_lmp.soap.BACKEND); printed: labels that differ and the largest difference in distance to
the nearest reference, then the SOAP cost per oxygen of each backend on those frames (best of --repeats,
measured side by side in this run) and its ratio.

Usage: python benchmarks/soap_backends.py [--model M] [--repeats 3] [--data DIR] [--md runs/md]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp import soap as soap_module
from icephase_lmp.model_file import load_model
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.trajectory import Selection, read_frames

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gcicenet"
TAGS = ("1h", "1c", "2", "3", "6", "7", "sI", "w", "T")
OUR_MD = ("coexistence_250K", "ice_v_250K", "sH_250K", "liquid_220K")
BACKENDS = ("icephase", "dscribe")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--md", type=Path, default=REPO / "runs" / "md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    if soap_module.BACKEND != "icephase":
        raise SystemExit("the SOAP kernel is not built in this environment (bash scripts/install.sh builds it)")
    model = load_model(args.model)
    jobs = [(f"GCIceNet {t}", args.data / f"md_{t}_10frame.xtc", args.data / f"md_{t}.tpr", Selection(name="OW"),
             slice(0, 11, 5)) for t in TAGS]
    jobs += [(name, args.md / f"{name}.lammpstrj", None, Selection(), slice(-1, None)) for name in OUR_MD
             if (args.md / f"{name}.lammpstrj").exists()]
    total = differing = 0
    worst = 0.0
    seconds = dict.fromkeys(BACKENDS, 0.0)
    print(f"{'frames':22s} {'O':>6s} {'labels differing':>17s} {'max |d distance|':>17s}")
    for title, traj, top, select, frames in jobs:
        n = diff = 0
        largest = 0.0
        for frame in read_frames(traj, top, select, frames):
            results = {}
            for backend in BACKENDS:
                soap_module.BACKEND = backend  # descriptors are cached per backend
                results[backend] = Pipeline(model).run(frame.positions, frame.cell, frame.pbc)
                clean = results[backend].positions
                desc = model.classifier.soap.descriptor(periodic=True)
                best = np.inf
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    desc.create(clean, frame.cell, frame.pbc)
                    best = min(best, time.perf_counter() - t0)
                seconds[backend] += best
            ours, theirs = results["icephase"], results["dscribe"]
            n += len(ours.codes)
            diff += int(np.count_nonzero(ours.codes != theirs.codes))
            largest = max(largest, float(np.abs(ours.distances - theirs.distances).max()))
        print(f"{title:22s} {n:6d} {diff:17d} {largest:17.2e}", flush=True)
        total, differing, worst = total + n, differing + diff, max(worst, largest)
    soap_module.BACKEND = "icephase"
    print(f"\nall {total} molecule-frames: {differing} labels differ; largest distance difference {worst:.2e} "
          f"(threshold {model.classifier.threshold(model.classifier.metric, denoised=True):.2f})")
    us = {b: 1e6 * s / total for b, s in seconds.items()}
    print(f"SOAP per oxygen, best of {args.repeats}: ours {us['icephase']:.1f} us, DScribe {us['dscribe']:.1f} us; "
          f"DScribe / ours {us['dscribe'] / us['icephase']:.2f}x")


if __name__ == "__main__":
    main()
