"""Per-phase accuracy on our own MD: every crystal we have MD of, and liquids, with a model and a baseline.

Our TIP4P/Ice runs at 250 K (scripts/make_md_snapshots.py; Ih, Ic, sI, sII, sH at 1 atm, II and III at
0.3 GPa, V, XII and IV at 0.5 GPa, VI at 1 GPa, VII at 3 GPa; each checked to stay on its lattice), Ih, Ic and sI
at 268 K and TIP4P/2005 Ih at 248 K (2 K below each model's melting point), Ih at 0.2 GPa, VI at 2 GPa and
280 K, VII at 8 GPa and 300 K, the empty TS-I and HS-I hydrates at 250 K (no model has them), the liquid at
300 K and 220 K
(0.81 Tm), and mW liquid at 220 K (runs/interfaces). The right label of a crystal is its
phase where the model has a reference for it, else "other crystal" (code -2); of a liquid, liquid.

By default the odd frames (1:21:2): models/make_extended_model.sh calibrates on the even ones, so for the
extended model these frames are unseen (the seven-phase model was calibrated on all frames of its seven).

Printed per run and model: molecules, % right, % liquid, % other crystal, % another phase.

Usage: python benchmarks/md_phases.py [--model M] [--baseline B] [--baseline-one-look] [--frames 1:21:2]
       [--md runs/md]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp import pipeline as pipeline_module
from icephase_lmp.model_file import load_model
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.selection import parse_frames
from icephase_lmp.trajectory import Selection, read_frames

REPO = Path(__file__).resolve().parents[1]
#: run name -> the phase it holds (None: liquid)
RUNS = {
    "ice_ih_250K": "Ih", "ice_ic_250K": "Ic", "ice_ii_250K": "II", "ice_iii_250K": "III", "ice_vi_250K": "VI",
    "ice_vii_250K": "VII", "sI_250K": "sI", "ice_v_250K": "V", "ice_xii_250K": "XII", "sII_250K": "sII",
    "sH_250K": "sH", "ice_iv_250K": "IV", "liquid_300K": None, "liquid_220K": None,
    # empty TS-I and HS-I hydrate frameworks: no shipped model has a reference for them ("other crystal")
    "ts1_250K": "TS-I", "hs1_250K": "HS-I",
    # 2 K below the water model's melting point (TIP4P/Ice 270 K; TIP4P/2005 250 K): the hottest crystals
    "ice_ih_268K": "Ih", "ice_ic_268K": "Ic", "sI_268K": "sI", "ice_ih_tip4p2005_248K": "Ih",
    # away from the calibration's pressures: compressed Ih, VI at 2 GPa and 280 K, VII at 8 GPa and 300 K
    "ice_ih_0.2GPa_250K": "Ih", "ice_vi_2GPa_280K": "VI", "ice_vii_8GPa_300K": "VII",
}


def expected_code(phase: str | None, names: dict[int, str]) -> int:
    if phase is None:
        return LIQUID
    by_name = {name: code for code, name in names.items() if code > LIQUID}
    return by_name.get(phase, OTHER_CRYSTAL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--baseline")
    ap.add_argument("--frames", default="1:21:2")
    ap.add_argument("--md", type=Path, default=REPO / "runs" / "md")
    ap.add_argument("--mw", type=Path, default=REPO / "runs" / "interfaces" / "liquid_220K.lammpstrj")
    ap.add_argument("--baseline-one-look", action="store_true",
                    help="the baseline (default: the model) with the other-crystal repeat test at the classified "
                         "positions only (the code before the sixteenth session's second look)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    models = {"model": load_model(args.model)}
    if args.baseline or args.baseline_one_look:
        models["baseline"] = load_model(args.baseline or args.model)
    # a snapshot after more iterations than any model runs is never taken: one look
    looks = {"model": pipeline_module.REPEAT_TEST_ITERATIONS,
             "baseline": 10**6 if args.baseline_one_look else pipeline_module.REPEAT_TEST_ITERATIONS}
    for key, m in models.items():
        print(f"{key:8s} {m.path.name}: {', '.join(m.classifier.code_names[c] for c in sorted(m.classifier.code_names) if c > 0)}")
    runs = [(name, args.md / f"{name}.lammpstrj", phase) for name, phase in RUNS.items()]
    runs.append(("mW liquid 220K", args.mw, None))
    frames = parse_frames(args.frames)
    head = "".join(f" | {key:>8s}: right liquid  other  phase" for key in models)
    print(f"\n{'run':22s} {'label':>7s} {'O':>6s}{head}")
    for name, path, phase in runs:
        if not path.exists():
            print(f"{name:22s} (no {path})")
            continue
        row, n = "", 0
        first = models["model"].classifier.code_names
        label = first[expected_code(phase, first)].replace("other crystal", "other")
        for key, m in models.items():
            names = m.classifier.code_names
            want = expected_code(phase, names)
            pipe = Pipeline(m)
            pipeline_module.REPEAT_TEST_ITERATIONS = looks[key]
            codes = np.concatenate([pipe.run(f.positions, f.cell, f.pbc).codes
                                    for f in read_frames(path, None, Selection(), frames)])
            n = len(codes)
            pct = {k: 100.0 * np.mean(v) for k, v in {
                "right": codes == want, "liquid": codes == LIQUID, "other": codes == OTHER_CRYSTAL,
                "phase": (codes > LIQUID) & (codes != want)}.items()}
            row += (f" | {'':8s}  {pct['right']:6.2f} {pct['liquid']:6.2f} {pct['other']:6.2f} {pct['phase']:6.2f}")
        print(f"{name:22s} {label:>7s} {n:6d}{row}", flush=True)


if __name__ == "__main__":
    main()
