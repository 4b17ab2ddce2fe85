"""Cost and memory per oxygen from ~1,000 to ~100,000 molecules (issue 10: within 1.5x across the range).

The GCIceNet liquid and Ih frames (frame 0, ~1,000 O each) are replicated n x n x n times (default n = 1,
2, 3, 5: about 1k, 8k, 28k and 128k oxygens). Each size runs in a fresh process (one torch thread, the
shipped model, the default pipeline: denoise 8 iterations, SOAP, classification, boundary step, clusters):
a first `Pipeline.run` (cold), then --repeats more, timed (best of). Memory: the process's peak resident set minus its
resident set once the model was loaded and the box built, per oxygen (it includes one-time allocations of the first run,
which weigh less the larger the box).

Usage: python benchmarks/scaling.py [--reps 1,2,3,5] [--systems w,1h] [--repeats 2] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"

ONE_SIZE = """
import json, resource, time, numpy as np, torch, warnings
warnings.filterwarnings("ignore")
from icephase_lmp.denoise import denoise
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.trajectory import Selection, read_frames
torch.set_num_threads(1)
def rss_mb():  # current resident set, from /proc (getrusage gives only the peak)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
pipe = Pipeline.from_path(None)
frame = next(read_frames({xtc!r}, {tpr!r}, Selection(name="OW"), slice(0, 1)))
n = {reps}
shifts = np.array([[i, j, k] for i in range(n) for j in range(n) for k in range(n)]) @ frame.cell
positions = (frame.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
cell = frame.cell * n
base = rss_mb()
pipe.run(positions, cell, (True, True, True))  # cold: TorchScript and SOAP set-up, buffers
def best(fn):  # best of {repeats}: this machine's speed moves by tens of percent from one second to the next
    times = []
    for _ in range({repeats}):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result
wall, out = best(lambda: pipe.run(positions, cell, (True, True, True)))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# the two big parts of that run, timed again on their own: the denoiser, and SOAP of the denoised positions
model = pipe.model
den, result = best(lambda: denoise(model.offline_denoiser(), positions, cell, (True,) * 3, model.r_max, pipe.iterations))
clean = result.positions
soap, _ = best(lambda: model.classifier.soap_features(clean, cell, (True,) * 3))
print(json.dumps({{"n": len(positions), "wall": wall, "denoise": den, "soap": soap, "base_mb": base, "peak_mb": peak,
                  "ice": float((out.codes > 0).mean())}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", default="1,2,3,5", help="replications n (n x n x n copies of the frame)")
    ap.add_argument("--systems", default="w,1h", help="GCIceNet system tags (w: liquid, 1h: ice Ih)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per size after the cold one (best of)")
    args = ap.parse_args()
    reps = [int(r) for r in args.reps.split(",")]
    print(f"best of {args.repeats} Pipeline.run after a cold one, a fresh process per size, 1 torch thread, "
          "shipped model")
    print(f"{'system':6s} {'oxygens':>8s} {'us/O':>7s} {'vs first':>8s} {'denoise':>8s} {'SOAP':>6s} {'rest':>6s} "
          f"{'peak-base MB':>12s} {'kB/O':>6s} {'ice':>6s}")
    for tag in args.systems.split(","):
        xtc, tpr = str(args.data / f"md_{tag}_10frame.xtc"), str(args.data / f"md_{tag}.tpr")
        first = None
        for n in reps:
            code = ONE_SIZE.format(xtc=xtc, tpr=tpr, reps=n, repeats=args.repeats)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{tag:6s} x{n}^3 failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            us = 1e6 * r["wall"] / r["n"]
            first = first or us
            extra = max(0.0, r["peak_mb"] - r["base_mb"])
            den, soap = (1e6 * r[k] / r["n"] for k in ("denoise", "soap"))
            print(f"{tag:6s} {r['n']:8d} {us:7.0f} {us / first:7.2f}x {den:8.0f} {soap:6.0f} {us - den - soap:6.0f} "
                  f"{extra:12.0f} {1024 * extra / r['n']:6.1f} "
                  f"{100 * r['ice']:5.1f}%", flush=True)


if __name__ == "__main__":
    main()
