"""The nearest-reference search: icephase's own against scikit-learn's, side by side in one run.

The classifier's last step finds, for every oxygen's reduced SOAP vector, the nearest of the model's
reference environments (`classifier.nearest_reference`). scikit-learn's
`sklearn.metrics.pairwise_distances_argmin_min` computes the same argmin and distance. This prints, for
query blocks of realistic size (real oxygens of the GCIceNet test data, SOAP-only, reduced by the shipped
model; the queries are repeated to reach the larger sizes) against the shipped model's references, both
metrics the classifier offers:
- the best of --repeats wall times of each, and the ratio sklearn / icephase;
- whether the argmins agree (the labels) and the largest absolute difference of the distances;
then the same agreement over every oxygen of frame 0 of all nine GCIceNet systems; then, per system, the
searches the classifier has used on that frame after denoising (what `icephase classify` searches), in us per
row: the plain scan of every reference, the k-d tree bounded by the liquid threshold with the scan for the rows
it does not answer (the classifier's search before the fifteenth session, and still without the compiled
kernel), and the indexed search (`ReferenceIndex`, the classifier's search now), with whether the three agree.

Both run with the process's default threads (numpy's BLAS and sklearn's OpenMP alike); --threads caps
them, through threadpoolctl, for a single-core figure.

Usage: python benchmarks/nearest_reference.py [--model M] [--data DIR] [--sizes 1000,5000] [--repeats 5]
       [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import pairwise_distances_argmin_min

from icephase_lmp.classifier import METRICS, ReferenceIndex, ReferenceTree, nearest_reference
from icephase_lmp.denoise import denoise
from icephase_lmp.model_file import load_model
from icephase_lmp.readers import read_frames
from icephase_lmp.selection import Selection

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"
TAGS = ("1h", "1c", "2", "3", "6", "7", "sI", "w", "T")


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """The shortest of ``repeats`` wall times of ``fn()``, seconds."""
    return min(timeit.repeat(fn, repeat=repeats, number=1))


def queries(model, data: Path, denoised: bool = False) -> dict[str, np.ndarray]:
    """Reduced SOAP vectors (n, k) of every oxygen of frame 0 of each GCIceNet system, without denoising or
    (``denoised``) after the model's denoiser."""
    clf = model.classifier
    out = {}
    for tag in TAGS:
        frame = next(read_frames(data / f"md_{tag}_10frame.xtc", data / f"md_{tag}.tpr", Selection(name="OW"),
                                 slice(0, 1)))
        positions = frame.positions
        if denoised:
            positions = denoise(model.offline_denoiser(), positions, frame.cell, frame.pbc, model.r_max,
                                model.iterations, model.tolerance).positions
        out[tag] = clf.reduce(clf.soap_features(positions, frame.cell, frame.pbc))
    return out


def compare(rows: np.ndarray, refs: np.ndarray, metric: str) -> tuple[bool, float]:
    """(argmins equal, max |distance difference|) of the two searches on ``rows``."""
    ours_i, ours_d = nearest_reference(rows, refs, metric)
    sk_i, sk_d = pairwise_distances_argmin_min(rows, refs, metric=metric)
    return bool(np.array_equal(ours_i, sk_i)), float(np.abs(ours_d - sk_d).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model.pth (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sizes", default="1000,5000", help="query rows per timing, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, help="cap BLAS/OpenMP threads (default: the process's)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    if not args.data.is_dir():
        raise SystemExit(f"GCIceNet data not found at {args.data}: pass --data")
    limit: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.threads)
    model = load_model(args.model)
    refs, _ = model.classifier.references(denoised=True)
    per_system = queries(model, args.data)
    pool = np.concatenate(list(per_system.values()))
    with limit:
        print(f"references {refs.shape[0]} x {refs.shape[1]} dims; query pool {len(pool)} real oxygens; "
              f"threads {args.threads or 'default'}; best of {args.repeats}")
        print(f"{'metric':9s} {'rows':>6s} {'icephase ms':>12s} {'sklearn ms':>11s} {'sklearn/ours':>13s} "
              f"{'same argmin':>12s} {'max |dd|':>10s}")
        for metric in METRICS:
            for size in (int(s) for s in args.sizes.split(",")):
                rows = np.resize(pool, (size, pool.shape[1]))  # repeats the pool to reach `size` rows
                ours = best_of(args.repeats, lambda: nearest_reference(rows, refs, metric))
                theirs = best_of(args.repeats, lambda: pairwise_distances_argmin_min(rows, refs, metric=metric))
                same, diff = compare(rows, refs, metric)
                print(f"{metric:9s} {size:6d} {1e3 * ours:12.2f} {1e3 * theirs:11.2f} {theirs / ours:13.2f} "
                      f"{str(same):>12s} {diff:10.2e}")
        print("\nagreement on every oxygen of frame 0 of each GCIceNet system (reduced SOAP, no denoising):")
        for metric in METRICS:
            results = [compare(q, refs, metric) for q in per_system.values()]
            print(f"{metric:9s} argmins equal in all {len(TAGS)} systems: {all(r[0] for r in results)}; "
                  f"max |distance difference| {max(r[1] for r in results):.2e}")
        clf = model.classifier
        metric = clf.metric
        threshold = clf.threshold(metric, denoised=True)
        tree, index = ReferenceTree(refs, metric), ReferenceIndex(refs, metric)
        print(f"\nper system after denoising, {metric}, liquid threshold {threshold:.3g}: us per row (best of "
              f"{args.repeats})")
        print(f"{'sys':4s} {'rows':>5s} {'liquid':>6s} {'scan':>7s} {'tree+scan':>10s} {'indexed':>8s} "
              f"{'tree+scan/indexed':>18s} {'same':>5s}")
        sums = np.zeros(3)
        n_all = 0
        for tag, rows in queries(model, args.data, denoised=True).items():
            searches = (lambda: nearest_reference(rows, refs, metric),
                        lambda: nearest_reference(rows, refs, metric, tree=tree, bound=threshold),
                        lambda: nearest_reference(rows, refs, metric, index=index))
            answers = [search() for search in searches]
            same = all(np.array_equal(answers[0][0], x[0]) and np.array_equal(answers[0][1], x[1]) for x in answers)
            us = np.array([1e6 * best_of(args.repeats, search) / len(rows) for search in searches])
            sums += us * len(rows)
            n_all += len(rows)
            liquid = float(np.mean(answers[0][1] > threshold))
            print(f"{tag:4s} {len(rows):5d} {100 * liquid:5.1f}% {us[0]:7.1f} {us[1]:10.1f} {us[2]:8.1f} "
                  f"{us[1] / us[2]:17.2f}x {str(same):>5s}")
        mean = sums / n_all
        print(f"{'all':4s} {n_all:5d} {'':6s} {mean[0]:7.1f} {mean[1]:10.1f} {mean[2]:8.1f} {mean[1] / mean[2]:17.2f}x")


if __name__ == "__main__":
    main()
