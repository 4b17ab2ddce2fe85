"""What a fresh process pays before its first labels (issue 10: start-up under 2 s, a first call that is not
seconds long), with the alternatives measured side by side in the same run, each in fresh processes.

1. Wall time of `icephase --help`, `icephase inspect` and `icephase classify` on one frame.
2. Reaching a ready SOAP calculator (imports and radial basis) after the pipeline's own imports:
   `icephase_lmp.soap.GtoSoap` (DScribe's extension, now) against `dscribe.descriptors.SOAP` (before).
3. The denoiser's first three calls and its steady state with TorchScript's optimising executor (torch's
   default) and with the plain interpreter (what `denoise.py` and the LAMMPS compute use on CPU).
4. With --baseline-model OLD.pth: loading the model file (after torch's import) and classify on one frame,
   the shipped model (its denoiser stored frozen) against OLD (e.g. a file with a scripted denoiser).

Usage: python benchmarks/startup.py [--data DIR] [--repeats 3] [--baseline-model OLD.pth]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"

IMPORT_COST = """
import time, icephase_lmp.pipeline
t = time.perf_counter()
{stmt}
print(time.perf_counter() - t)
"""

# Two copies of the denoiser (each has its own executor state), called in turn so that both see the same
# load on a shared machine: copy A with the optimising executor, copy B with the plain interpreter.
DENOISER_CALLS = """
import time, torch
from icephase_lmp.geometry import neighbor_edges
from icephase_lmp.model_file import load_model
from icephase_lmp.trajectory import read_frames
torch.set_num_threads(1)
models = (load_model(None), load_model(None))
frame = next(read_frames({xtc!r}, top={tpr!r}, frames=slice(0, 1)))
edges, shift = neighbor_edges(frame.positions, frame.cell, frame.pbc, models[0].r_max)
args = (torch.tensor(frame.positions, dtype=torch.float32), torch.tensor(edges), torch.tensor(shift, dtype=torch.float32))
times = ([], [])
with torch.no_grad():
    for _ in range(10):
        for k, optimise in enumerate((True, False)):
            with torch.jit.optimized_execution(optimise):
                t = time.perf_counter()
                models[k].denoiser(*args)
                times[k].append(time.perf_counter() - t)
print(len(frame.positions), *times[0], *times[1])
"""


LOAD_COST = """
import time, torch
from icephase_lmp.model_file import load_model
t = time.perf_counter()
load_model({path!r})
print(time.perf_counter() - t)
"""


def wall(cmd: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def python_output(code: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [float(x) for x in out.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-model", type=Path, help="a model file to compare loading with (section 4)")
    args = ap.parse_args()
    xtc, tpr = str(args.data / "md_1h_10frame.xtc"), str(args.data / "md_1h.tpr")
    icephase = [sys.executable, "-m", "icephase_lmp.cli"]
    out = Path("/tmp") / f"icephase_startup_{time.time_ns()}.csv"

    print(f"fresh processes, best of {args.repeats}, 1 torch thread for the denoiser calls")
    print("\n1. wall time of a command (s)")
    print(f"  icephase --help                      {wall(icephase + ['--help'], args.repeats):6.2f}")
    print(f"  icephase inspect (shipped model)     {wall(icephase + ['inspect'], args.repeats):6.2f}")
    one = icephase + ["classify", xtc, "--top", tpr, "--frames", "0", "--threads", "1", "--quiet", "--out", str(out)]
    print(f"  icephase classify, one frame (md_1h) {wall(one, args.repeats):6.2f}")
    out.unlink(missing_ok=True)

    print("\n2. a ready SOAP calculator after the pipeline's imports (s)")
    now = "from icephase_lmp.soap import GtoSoap; GtoSoap(5.0, 12, 10, 1.0, True)"
    before = ("from dscribe.descriptors import SOAP; "
              "SOAP(species=['O'], r_cut=5.0, n_max=12, l_max=10, sigma=1.0, periodic=True)")
    for label, stmt in (("icephase_lmp.soap.GtoSoap (now)", now), ("dscribe.descriptors.SOAP (before)", before)):
        best = min(python_output(IMPORT_COST.format(stmt=stmt))[0] for _ in range(args.repeats))
        print(f"  {label:46s} {best:6.2f}")

    print("\n3. denoiser calls on md_1h frame 0 (s), two copies called in turn: calls 1, 2, 3, best of calls 4-10")
    runs = [python_output(DENOISER_CALLS.format(xtc=xtc, tpr=tpr)) for _ in range(args.repeats)]
    n = int(runs[0][0])
    for k, label in enumerate(("optimising executor (torch default)", "plain interpreter (now, CPU)")):
        calls = [r[1 + 10 * k: 11 + 10 * k] for r in runs]
        first = [min(c[i] for c in calls) for i in range(3)]
        steady = min(min(c[3:]) for c in calls)
        print(f"  {label:36s} {first[0]:6.3f} {first[1]:6.3f} {first[2]:6.3f}  steady {steady:6.3f}"
              f"  ({steady / n * 1e6:.1f} us per oxygen, {n} oxygens)")

    if args.baseline_model:
        from icephase_lmp.model_file import SHIPPED_MODEL

        print(f"\n4. the shipped model against {args.baseline_model} (s), alternated: load_model after torch's "
              "import; classify one frame")
        for label, path in (("shipped", SHIPPED_MODEL), ("baseline", args.baseline_model)):
            load = min(python_output(LOAD_COST.format(path=str(path)))[0] for _ in range(args.repeats))
            frame = wall(one + ["--model", str(path)], args.repeats)
            out.unlink(missing_ok=True)
            print(f"  {label:10s} load_model {load:6.2f}   classify, one frame {frame:6.2f}")

if __name__ == "__main__":
    main()
