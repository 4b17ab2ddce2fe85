"""Cost of the offline pipeline on CPU with 1 thread: a model beside a baseline model, in one run.

For every GCIceNet system's frame 0 (~1000-1400 oxygens), per oxygen and per frame, best of --repeats:
- the whole pipeline (`Pipeline.run`: too-close check, denoise with the model's iterations, SOAP,
  classification, boundary step, clusters), which is what `icephase classify` pays per frame;
- its parts: denoising (all iterations), SOAP, and the rest (reduction, nearest reference, boundary
  step, clusters, wrapping), from separate timings of the same calls.
Then the mean over all oxygens of each model, the ratio baseline / model and the target of 150 us per
oxygen (issue 10).

Both models run through this checkout's code, so the ratio is what the model file changes (iterations,
SOAP size); code changes show in the figures of either model against older runs. The previous shipped
model is in git history: the last file with the nequip form of the denoiser (docs/validation.md, "The compact
denoiser") is  git show 8cd74a3:models/icephase-7phase.pth > /tmp/previous.pth
`--baseline-soap dscribe` computes the baseline's SOAP with DScribe's extension (the code before our
kernel) instead: with no --baseline the same model, so the ratio is what the kernel changes.
`--baseline-search matscipy` likewise gives the baseline's denoiser matscipy's neighbour search (the code
before the compiled periodic search, seventh session), and `--baseline-radial network` the radial MLP on
every edge instead of the tabulated radial weights (the code before the tables, eighth session), and
`--baseline-precision double` the SOAP expansion in double precision (the code before the ninth session), and
`--baseline-one-look` the other-crystal repeat test at the classified positions only (before the sixteenth).

Usage: python benchmarks/speed.py [--model M] [--baseline B] [--baseline-soap dscribe]
       [--baseline-search matscipy] [--baseline-radial network] [--baseline-precision double] [--baseline-one-look]
       [--repeats 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp import geometry
from icephase_lmp import pipeline as pipeline_module
from icephase_lmp import soap as soap_module
from icephase_lmp.denoise import denoise
from icephase_lmp.denoiser_kernel import KernelDenoiser
from icephase_lmp.model_file import load_model
from icephase_lmp.other_crystal import find_other_crystal
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.trajectory import Selection, read_frames

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"
TAGS = ("1h", "1c", "2", "3", "6", "7", "sI", "w", "T")
TARGET_US = 150.0


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def costs(model, frame, repeats: int) -> dict[str, float]:
    """Seconds per frame: total, denoise, soap (the rest is total minus both), and the other-crystal step in
    its worst case (every molecule labelled liquid), printed apart for scale.

    The total is the pipeline as `icephase classify` runs it, with the model's own threshold, so the liquid
    molecules of a frame go through the nearest-reference search and the other-crystal step as they do for
    a user. (Runs before 2026-12-02, fourth session, set the threshold to 1e9 to keep the other-crystal step
    out of the total; that also sent every liquid molecule through an unbounded k-d tree search, slower
    than the search a real threshold leads to, and inflated the liquid and T frames.)"""
    clf = model.classifier
    pipe = Pipeline(model, threshold=None if clf.thresholds else 10.0)
    pipe.run(frame.positions, frame.cell, frame.pbc)  # warm-up: TorchScript optimises on its first calls
    total = best_of(repeats, lambda: pipe.run(frame.positions, frame.cell, frame.pbc))
    denoiser = model.offline_denoiser()  # what Pipeline.run uses: the compiled kernel where the file allows
    den = best_of(repeats, lambda: denoise(denoiser, frame.positions, frame.cell, frame.pbc, model.r_max,
                                           model.iterations, model.tolerance))
    clean = denoise(denoiser, frame.positions, frame.cell, frame.pbc, model.r_max, model.iterations).positions
    soap = best_of(repeats, lambda: model.classifier.soap_features(clean, frame.cell, frame.pbc))
    reduced = clf.reduce(clf.soap_features(clean, frame.cell, frame.pbc))
    liquid = np.zeros(len(clean), dtype=np.int32)
    threshold = clf.threshold(clf.metric, denoised=True) if clf.thresholds else 10.0
    other = best_of(repeats, lambda: find_other_crystal(liquid, reduced, clean, frame.cell, frame.pbc, clf.metric,
                                                        threshold))
    return {"total": total, "denoise": den, "soap": soap, "other": other}


def describe(model) -> str:
    s = model.classifier.soap
    runs = "TorchScript"
    if model.runs_kernel():
        radial = "tabulated" if model.offline_denoiser().tabulated else "per-edge MLP"
        runs = f"compiled message kernel, {radial} radial weights"
    return (f"{model.path.name}: {model.iterations} iterations ({runs}), SOAP n_max {s.n_max} l_max {s.l_max} "
            f"r_cut {s.r_cut} sigma {s.sigma}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="the model to measure (default: the shipped one)")
    ap.add_argument("--baseline", help="the model to compare with (e.g. the previous shipped model)")
    ap.add_argument("--baseline-soap", choices=("icephase", "dscribe"),
                    help="SOAP code for the baseline (default: this process's; dscribe = before our kernel)")
    ap.add_argument("--baseline-search", choices=("icephase", "matscipy"),
                    help="neighbour search of the baseline's denoiser (default: this process's; matscipy = before "
                         "the compiled periodic search)")
    ap.add_argument("--baseline-radial", choices=("table", "network"),
                    help="radial weights of the baseline's denoiser (default: this process's table; network = the "
                         "radial MLP per edge, before the tables)")
    ap.add_argument("--baseline-precision", choices=tuple(soap_module.PRECISIONS),
                    help="arithmetic of the baseline's SOAP kernel (default: this process's, single; double = "
                         "before the ninth session)")
    ap.add_argument("--baseline-one-look", action="store_true",
                    help="the baseline's other-crystal repeat test at the classified positions only (the code "
                         "before the sixteenth session's second look after REPEAT_TEST_ITERATIONS)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    models = {"model": load_model(args.model)}
    if (args.baseline or args.baseline_soap or args.baseline_search or args.baseline_radial or args.baseline_precision
            or args.baseline_one_look):
        models["baseline"] = load_model(args.baseline or args.model)
    if args.baseline_radial == "network":
        baseline = models["baseline"]
        if not baseline.runs_kernel():
            raise SystemExit("--baseline-radial network needs a baseline that runs the compiled kernel")
        baseline._kernel_denoiser = KernelDenoiser(baseline.compact, tabulated=False)  # what offline_denoiser gives
    backends = {"model": soap_module.BACKEND, "baseline": args.baseline_soap or soap_module.BACKEND}
    precisions = {"model": soap_module.PRECISION, "baseline": args.baseline_precision or soap_module.PRECISION}
    # geometry.neighbor_edges searches with matscipy where the box holds fewer than PERIODIC_BINS cutoffs
    bins = {"model": geometry.PERIODIC_BINS,
            "baseline": np.inf if args.baseline_search == "matscipy" else geometry.PERIODIC_BINS}
    # a snapshot after more iterations than any model runs is never taken: one look
    looks = {"model": pipeline_module.REPEAT_TEST_ITERATIONS,
             "baseline": 10**6 if args.baseline_one_look else pipeline_module.REPEAT_TEST_ITERATIONS}
    for key, model in models.items():
        search = "matscipy" if np.isinf(bins[key]) else "compiled where the box allows"
        soap = backends[key] + (f" in {precisions[key]} precision" if backends[key] == "icephase" else "")
        print(f"{key:8s} {describe(model)}; SOAP by {soap}; denoiser neighbour search {search}")

    frames = {tag: next(read_frames(args.data / f"md_{tag}_10frame.xtc", args.data / f"md_{tag}.tpr",
                                    Selection(name="OW"), slice(0, 1))) for tag in TAGS}
    print("\n== us per oxygen per frame, 1 thread (total = denoise + SOAP + rest) ==")
    head = "".join(f" | {key:>8s} total  denoise   SOAP   rest" for key in models)
    print(f"{'sys':3s} {'O':>5s}{head}")
    sums = {key: np.zeros(4) for key in models}
    n_all = 0
    for tag, frame in frames.items():
        n = len(frame.positions)
        n_all += n
        row = f"{tag:3s} {n:5d}"
        for key, model in models.items():
            soap_module.BACKEND = backends[key]  # descriptors are cached per backend and precision
            soap_module.PRECISION = precisions[key]
            geometry.PERIODIC_BINS = bins[key]
            pipeline_module.REPEAT_TEST_ITERATIONS = looks[key]
            c = costs(model, frame, args.repeats)
            sums[key] += (c["total"], c["denoise"], c["soap"], c["other"])
            us = {k: 1e6 * v / n for k, v in c.items()}
            row += (f" | {'':8s} {us['total']:5.0f} {us['denoise']:8.0f} {us['soap']:6.0f} "
                    f"{us['total'] - us['denoise'] - us['soap']:6.0f}")
        print(row, flush=True)
    print()
    for key, s in sums.items():
        total, den, soap, other = 1e6 * s / n_all
        print(f"{key:8s} all {n_all} O: {total:6.1f} us/oxygen (denoise {den:.1f}, SOAP {soap:.1f}, "
              f"rest {total - den - soap:.1f}); target <= {TARGET_US:.0f}: {'met' if total <= TARGET_US else 'NOT met'}; "
              f"other-crystal step, every molecule liquid-labelled: {other:.1f} us/oxygen")
    if "baseline" in sums:
        print(f"baseline / model: {sums['baseline'][0] / sums['model'][0]:.2f}x "
              f"(denoise {sums['baseline'][1] / sums['model'][1]:.2f}x, SOAP {sums['baseline'][2] / sums['model'][2]:.2f}x)")


if __name__ == "__main__":
    main()
