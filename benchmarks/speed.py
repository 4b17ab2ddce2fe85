"""Cost of the offline pipeline on CPU with 1 thread (the shipped model unless --model).

Prints:
- the denoiser's cost in microseconds per atom per iteration for ~1000 and ~8000 oxygens (ice Ih with
  thermal-like noise, and the GCIceNet liquid frame), after a warm-up call;
- the end-to-end time per frame (denoise with the model's iterations + SOAP + classify) for every GCIceNet
  system's frame 0, in microseconds per oxygen, against the target of 500 us per oxygen.

Usage: python benchmarks/speed.py [--model M] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.denoise import denoise
from icephase_lmp.model_file import load_model
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.references import builtin_reference, supercell
from icephase_lmp.trajectory import Selection, read_frames

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"
TARGET_US = 500.0


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    model = load_model(args.model)
    rng = np.random.default_rng(0)

    print("== denoiser, 1 thread, us per atom per iteration ==")
    for width in (24.0, 60.0):  # ~1,000 and ~8,000 oxygens
        atoms = supercell(builtin_reference("Ih").atoms, width)
        pos = atoms.positions + rng.normal(0, 0.2, atoms.positions.shape)
        cell = atoms.cell.array
        denoise(model.denoiser, pos, cell, (True,) * 3, model.r_max, 2)  # TorchScript warm-up
        t = best_of(args.repeats, lambda: denoise(model.denoiser, pos, cell, (True,) * 3, model.r_max, 1))
        print(f"ice Ih, {len(pos):5d} O: {1e6 * t / len(pos):7.1f} us/atom/iteration")

    print(f"\n== end to end per frame (denoise x{model.iterations} + SOAP + classify), 1 thread ==")
    pipe = Pipeline(model, threshold=1e9)
    total_t = total_n = 0.0
    for tag in ("1h", "1c", "2", "3", "6", "7", "sI", "w", "T"):
        frame = next(read_frames(args.data / f"md_{tag}_10frame.xtc", args.data / f"md_{tag}.tpr",
                                 Selection(name="OW"), slice(0, 1)))
        t = best_of(args.repeats, lambda: pipe.run(frame.positions, frame.cell, frame.pbc))
        n = len(frame.positions)
        total_t += t
        total_n += n
        print(f"{tag:3s} {n:5d} O: {t:6.2f} s/frame = {1e6 * t / n:7.1f} us/oxygen")
    mean = 1e6 * total_t / total_n
    print(f"all {int(total_n)} O: {mean:.1f} us/oxygen per frame (target <= {TARGET_US:.0f}: "
          f"{'met' if mean <= TARGET_US else 'NOT met'})")


if __name__ == "__main__":
    main()
