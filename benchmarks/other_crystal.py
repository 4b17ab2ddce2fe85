"""Crystals without a reference: what the default pipeline calls them ("other crystal", code -2, or liquid).

Ideal GenIce2 supercells (>= 20 A) of crystals that the shipped model has no reference for (ice V, XII, IV,
the sII and sH clathrate frameworks), with i.i.d. Gaussian noise of 0.1 and 0.2 A on every oxygen (our ice Ih
MD at 250 K distorts first-shell O-O distances as much as 0.08 A of such noise: models/README.md), and two
phases it has references for (Ih, VI) as controls. Then, where they exist, our TIP4P/Ice MD of the same
crystals (scripts/make_md_snapshots.py --only ice_v_250K ice_xii_250K sII_250K sH_250K ice_iv_250K: V, XII
and IV at 250 K and 0.5 GPa, empty sII and sH at 250 K and 1 atm; every 4th frame): the real test. The
GCIceNet phase T, also MD, is in benchmarks/gcicenet_accuracy.py (last block).

With --leave-one-out, each phase the model has a reference for is left out in turn: the model's classifier
without that phase's reference environments (``Classifier.without_phase``; denoiser and threshold unchanged)
on our MD of that phase at 250 K (every 4th frame; md_phases.py's runs). Such a crystal has no reference, so
its right label is other crystal, not liquid and not the nearest other phase (Ic without Ic's references must
not become Ih). The denoiser still saw the phase in training; for a denoiser that never did, see the crystals
above (the seven-phase model's denoiser was trained without any of them).

Printed per crystal and noise level: molecules labelled other crystal, liquid, and each phase (%), with
the step on and, beside it, the classifier + boundary step alone (what the model gave before the step).

Usage: python benchmarks/other_crystal.py [--model M] [--width 20] [--seed 0] [--md runs/md] [--leave-one-out]
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.model_file import IcephaseModel, load_model
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.references import genice_cell, supercell
from icephase_lmp.trajectory import read_frames
from md_phases import RUNS as PHASE_OF_RUN

REPO = Path(__file__).resolve().parents[1]
#: our MD of crystals without a reference (make_md_snapshots.py)
MD_RUNS = {"ice_v_250K": "V", "ice_xii_250K": "XII", "sII_250K": "sII", "sH_250K": "sH", "ice_iv_250K": "IV"}

#: GenIce2 lattice -> name; the first five have no reference in the shipped model
CRYSTALS = {"5": "V", "12": "XII", "4": "IV", "CS2": "sII", "HS3": "sH", "1h": "Ih (reference)", "6": "VI (reference)"}
SIGMAS = (0.1, 0.2)


def shares(codes: np.ndarray, names: dict[int, str]) -> str:
    parts = [f"other {100 * np.mean(codes == OTHER_CRYSTAL):5.1f}", f"liquid {100 * np.mean(codes == LIQUID):5.1f}"]
    for code in sorted(c for c in np.unique(codes) if c > LIQUID):
        parts.append(f"{names[int(code)]} {100 * np.mean(codes == code):5.1f}")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--width", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--md", type=Path, default=REPO / "runs" / "md")
    ap.add_argument("--leave-one-out", action="store_true",
                    help="only: each of the model's phases without its references, on our MD of that phase")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    model = load_model(args.model)
    if args.leave_one_out:
        leave_one_out(model, args.md)
        return
    on, off = Pipeline(model), Pipeline(model, other_crystal=False)
    names = model.classifier.code_names
    rng = np.random.default_rng(args.seed)
    print(f"model {model.path}; metric {on.metric}, threshold {on.threshold:.4g}; % of the molecules")
    for lattice, name in CRYSTALS.items():
        atoms = supercell(genice_cell(lattice), args.width)
        for sigma in SIGMAS:
            pos = atoms.positions + rng.normal(0.0, sigma, atoms.positions.shape)
            with_step = on.run(pos, atoms.cell.array, (True, True, True)).codes
            without = off.run(pos, atoms.cell.array, (True, True, True)).codes
            print(f"{name:16s} {len(pos):5d} O, noise {sigma} A: {shares(with_step, names)}   "
                  f"| without the step: {shares(without, names)}", flush=True)
    for run, name in MD_RUNS.items():
        path = args.md / f"{run}.lammpstrj"
        if not path.is_file():
            print(f"{name:16s} MD: {path} not found (make_md_snapshots.py --only {run})")
            continue
        with_step, without = [], []
        for frame in list(read_frames(path))[::4]:
            with_step.append(on.run(frame.positions, frame.cell, frame.pbc).codes)
            without.append(off.run(frame.positions, frame.cell, frame.pbc).codes)
        n = len(with_step[0])
        print(f"{name:16s} MD {run}, {len(with_step)} frames x {n} O: {shares(np.concatenate(with_step), names)}   "
              f"| without the step: {shares(np.concatenate(without), names)}", flush=True)


def leave_one_out(model: IcephaseModel, md: Path) -> None:
    """Each phase of ``model`` left out of its references in turn, on our MD of that phase at 250 K."""
    names = model.classifier.code_names
    print(f"model {model.path}: each phase without its references, on our MD of it (every 4th frame); % of the "
          "molecules")
    for name in model.classifier.names:
        run = next((r for r, p in PHASE_OF_RUN.items() if p == name and r.endswith("_250K")), None)
        path = md / f"{run}.lammpstrj" if run else None
        if path is None or not path.is_file():
            print(f"{name:6s} left out: no MD of it at 250 K in {md}")
            continue
        without = replace(model, classifier=model.classifier.without_phase(name))
        codes = np.concatenate([Pipeline(without).run(f.positions, f.cell, f.pbc).codes
                                for f in list(read_frames(path))[::4]])
        print(f"{name:6s} left out, MD {run}, {len(codes)} O: {shares(codes, names)}", flush=True)


if __name__ == "__main__":
    main()
