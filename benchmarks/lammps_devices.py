"""compute icephase on the CPU and on a CUDA GPU side by side: the cost per call and whether the labels agree.

Oxygen-only ice Ih boxes with a disordered slab (examples/lammps_inputs/make_ice_oxygen_data.py) of several
sizes, 1 MPI rank, the compute with `device cpu` (one thread) and with `device cuda`, runs alternating
(cpu, cuda, cpu, cuda) so that a change in the machine's speed hits both; for each: the fastest timed call of
each device (the compute's own `timing yes` figures) and the number of molecules whose labels differ between
the two devices' last calls. The denoiser is what runs on the GPU; graph building, SOAP and the classifier stay
on the CPU (one thread), so the GPU's gain is bounded by their share.

Needs the plugin built against a CUDA-enabled torch and a visible GPU; without one the cuda runs stop with the
compute's own error, which is printed, and the CPU figures stand alone.

Usage: python benchmarks/lammps_devices.py [--widths 22 48 96] [--calls 3] [--rounds 2] [--model M] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_overhead import (INPUTS, MODEL, PLUGIN, Call, checked_inputs, compute_keywords,  # noqa: E402
                             oxygen_box, parse_calls, run_lammps)

DEVICES = ("cpu", "cuda")


def read_labels(dump: Path) -> np.ndarray:
    """The labels column of a one-frame dump sorted by id."""
    lines = dump.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    return np.array([int(float(line.split()[1])) for line in lines[start:]])


def one_size(work: Path, data: Path, model: Path, ghost: float, calls: int, rounds: int) -> None:
    best: dict[str, Call] = {}
    labels: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for _ in range(rounds):
        for device in DEVICES:
            if device in failed:
                continue
            dump = work / f"labels_{device}.dump"
            try:
                log = run_lammps(work, INPUTS / "in.devices",
                                 {"data": data.name, "ncalls": calls, "ghost": ghost, "model": model, "plugin": PLUGIN,
                                  "keywords": compute_keywords(model, device), "dump": dump.name},
                                 f"devices_{device}.log")
            except SystemExit as stop:  # the compute's error (e.g. no CUDA) is the result for that device
                errors = [line for line in str(stop).splitlines() if line.startswith("ERROR")]
                failed[device] = errors[0][:300] if errors else "LAMMPS failed (see the log)"
                continue
            timed = parse_calls(log)[1:-1]  # not the warm-up, not the dump's call
            fastest = min(timed, key=lambda c: c.total)
            if device not in best or fastest.total < best[device].total:
                best[device] = fastest
            labels[device] = read_labels(dump)
    n = next(iter(best.values())).oxygens if best else 0
    for device in DEVICES:
        if device in failed:
            print(f"  {n:7d} O, {device:4s}: failed: {failed[device]}")
            continue
        c = best[device]
        print(f"  {n:7d} O, {device:4s}: {1e6 * c.total / n:7.1f} us/O per call (graph {1e6 * c.graph / n:.1f}, denoise "
              f"{1e6 * c.denoise / n:.1f}, classify {1e6 * c.classify / n:.1f}, boundary {1e6 * c.boundary / n:.1f}; "
              f"{c.iterations} iterations)")
    if len(labels) == 2:
        differ = int(np.sum(labels["cpu"] != labels["cuda"]))
        print(f"  {n:7d} O: cpu / cuda {best['cpu'].total / best['cuda'].total:.2f}x per call; labels differ on "
              f"{differ} of {len(labels['cpu'])} molecules")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=float, nargs="+", default=[22.0, 48.0, 96.0], help="smallest box widths, A")
    ap.add_argument("--calls", type=int, default=3, help="timed invocations per run (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each device per size (default %(default)s)")
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--workdir", type=Path, help="keep the inputs, logs and dumps here (default: a temporary folder)")
    args = ap.parse_args()
    model, ghost = checked_inputs(args.model)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="icephase_lammps_devices_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"== compute icephase on cpu and cuda: {model.name}, 1 rank, best of {args.rounds} runs x {args.calls} "
          f"calls each, runs alternating ==")
    for width in args.widths:
        one_size(work, oxygen_box(work, width), model, ghost, args.calls, args.rounds)
    print(f"benchmark wall time: {time.perf_counter() - t0:.0f} s")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
