"""Our SOAP kernel (in single precision, the default, and in double) against DScribe's extension on real
frames: same labels? how much cheaper?

For frames 0, 5, 10 of each GCIceNet system and the last frame of some of our own TIP4P/Ice runs
(coexistence, ice V, sH, the 220 K liquid), the shipped pipeline runs three times, SOAP computed by our
kernel in single and in double precision and by DScribe (icephase_lmp.soap.BACKEND, PRECISION); printed for
each of ours: labels that differ from DScribe's run and the largest difference in distance to the nearest
reference, then the SOAP cost per oxygen of each on those frames (best of --repeats, measured side by side
in this run) and the ratios.

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
#: (name, backend, precision of our kernel)
VARIANTS = (("single", "icephase", "single"), ("double", "icephase", "double"), ("DScribe", "dscribe", "double"))
OURS = ("single", "double")


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
    settings = soap_module.BACKEND, soap_module.PRECISION  # this process's, put back at the end
    total = 0
    differing = dict.fromkeys(OURS, 0)
    worst = dict.fromkeys(OURS, 0.0)
    seconds = {name: 0.0 for name, _, _ in VARIANTS}
    print(f"{'frames':22s} {'O':>6s}" + "".join(f" | {name}: labels differing, max |d distance|" for name in OURS))
    for title, traj, top, select, frames in jobs:
        n = 0
        diff = dict.fromkeys(OURS, 0)
        largest = dict.fromkeys(OURS, 0.0)
        for frame in read_frames(traj, top, select, frames):
            results = {}
            for name, backend, precision in VARIANTS:
                # descriptors are cached per backend and precision
                soap_module.BACKEND, soap_module.PRECISION = backend, precision
                results[name] = Pipeline(model).run(frame.positions, frame.cell, frame.pbc)
                clean = results[name].positions
                desc = model.classifier.soap.descriptor(periodic=True)
                best = np.inf
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    desc.create(clean, frame.cell, frame.pbc)
                    best = min(best, time.perf_counter() - t0)
                seconds[name] += best
            theirs = results["DScribe"]
            n += len(theirs.codes)
            for name in OURS:
                diff[name] += int(np.count_nonzero(results[name].codes != theirs.codes))
                largest[name] = max(largest[name], float(np.abs(results[name].distances - theirs.distances).max()))
        print(f"{title:22s} {n:6d}" + "".join(f" | {diff[k]:8d} {largest[k]:10.2e}" for k in OURS), flush=True)
        total += n
        for name in OURS:
            differing[name] += diff[name]
            worst[name] = max(worst[name], largest[name])
    soap_module.BACKEND, soap_module.PRECISION = settings
    threshold = model.classifier.threshold(model.classifier.metric, denoised=True)
    for name in OURS:
        print(f"\nours in {name} precision, all {total} molecule-frames: {differing[name]} labels differ from "
              f"DScribe's; largest distance difference {worst[name]:.2e} (threshold {threshold:.2f})")
    us = {name: 1e6 * s / total for name, s in seconds.items()}
    print(f"SOAP per oxygen, best of {args.repeats}: ours single {us['single']:.1f} us, ours double "
          f"{us['double']:.1f} us, DScribe {us['DScribe']:.1f} us; double / single {us['double'] / us['single']:.2f}x, "
          f"DScribe / single {us['DScribe'] / us['single']:.2f}x")


if __name__ == "__main__":
    main()
