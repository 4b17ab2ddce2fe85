"""The paper's Table 1 on its own test data (../shared/data/gcicenet), SOAP-only and denoiser + SOAP.

Prints, for both pipelines and both metrics, with the model's stored thresholds:
- per-phase accuracy of the seven ice phases (nearest reference = true phase AND below the threshold),
  and the paper's Table 1 figure (nearest reference only, ice phases only);
- the liquid's recall (distance above the threshold);
- what the unseen phase T is labelled;
- the ice/liquid margin: worst ice distance vs best liquid distance, and the gap relative to the threshold;
- the full default pipeline (what `icephase classify` runs: denoise, classify, phase vote, boundary step,
  the censuses, "other crystal"): all eight classes and T (which should be other crystal);
- the classifier's cost per atom (SOAP, reduction + distances, denoiser per iteration) on a ~4000-O frame.

Usage: python benchmarks/gcicenet_accuracy.py [--model M] [--frames 0:11] [--data DIR] [--iterations N]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from icephase_lmp.calibrate import calibrate_threshold
from icephase_lmp.classifier import METRICS, nearest_reference
from icephase_lmp.denoise import denoise
from icephase_lmp.model_file import load_model
from icephase_lmp.pipeline import Pipeline
from icephase_lmp.trajectory import Selection, parse_frames, read_frames

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gcicenet"
#: file tag -> true phase name ("liquid" for w; None for T, which is no reference phase)
SYSTEMS = {"1h": "Ih", "1c": "Ic", "2": "II", "3": "III", "6": "VI", "7": "VII", "sI": "sI", "w": "liquid", "T": None}
PAPER_SOAP_ONLY = 90.2
PAPER_DENOISED = 100.0


def reduced_features(model, data: Path, frames: slice, iterations: int):
    """Per system: (raw reduced features, denoised reduced features, [(positions, cell, pbc)] per frame, as
    read), all frames stacked."""
    clf = model.classifier
    out = {}
    for tag in SYSTEMS:
        raw, den, frames_out = [], [], []
        for frame in read_frames(data / f"md_{tag}_10frame.xtc", data / f"md_{tag}.tpr", Selection(name="OW"), frames):
            raw.append(clf.reduce(clf.soap_features(frame.positions, frame.cell, frame.pbc)))
            d = denoise(model.offline_denoiser(), frame.positions, frame.cell, frame.pbc, model.r_max, iterations)
            den.append(clf.reduce(clf.soap_features(d.positions, frame.cell, frame.pbc)))
            frames_out.append((frame.positions, frame.cell, frame.pbc))
        out[tag] = (np.concatenate(raw), np.concatenate(den), frames_out)
        print(f"  {tag:3s}: {len(out[tag][0])} oxygens", flush=True)
    return out


def valley_threshold(model, feats, metric: str) -> float:
    """The valley between this data's ice and liquid distances: only for a candidate model that has no
    calibrated threshold yet (said so in the output)."""
    ref_features, _ = model.classifier.references(denoised=True)
    dist = {t: nearest_reference(feats[t][1], ref_features, metric)[1] for t in SYSTEMS}
    ice = np.concatenate([dist[t] for t, n in SYSTEMS.items() if n not in (None, "liquid")])
    return calibrate_threshold(ice, dist["w"]).threshold


def evaluate_full_pipeline(model, feats) -> None:
    """The eight classes and T as `icephase classify` labels them by default: the pipeline itself (denoise,
    classify, phase vote, boundary step, censuses, other crystal)."""
    clf = model.classifier
    code_of = {n: c for c, n in clf.code_names.items()}
    threshold = clf.thresholds.get(f"denoised/{clf.metric}")
    src = "model"
    if threshold is None:
        threshold, src = valley_threshold(model, feats, clf.metric), "NOT IN MODEL: valley of this data"
    print(f"\n== full default pipeline: denoised/{clf.metric}, threshold {threshold:.4g} from {src}, "
          f"boundary step {clf.boundary.rounds} rounds, censuses, other crystal ==")
    pipeline = Pipeline(model, threshold=threshold)
    right = total = 0
    for tag, name in SYSTEMS.items():
        codes = np.concatenate([pipeline.run(pos, cell, pbc).codes for pos, cell, pbc in feats[tag][2]])
        if name is None:
            vals, counts = np.unique(codes, return_counts=True)
            print("T (not a reference) labelled: " + ", ".join(
                f"{clf.code_names[int(v)]} {100 * c / len(codes):.2f}%" for v, c in zip(vals, counts)))
            continue
        ok = codes == code_of[name]
        right += ok.sum()
        total += len(ok)
        print(f"{name:6s} {100 * ok.mean():8.2f}% right of {len(ok)}")
    print(f"all 8 classes right: {right} of {total} ({100 * right / total:.3f}%)")


def evaluate(model, feats, pipeline: str, metric: str) -> None:
    clf = model.classifier
    key = f"{pipeline}/{metric}"
    threshold = clf.thresholds.get(key)
    idx = 0 if pipeline == "raw" else 1
    code_of = {n: c for c, n in clf.code_names.items()}
    dist, nearest = {}, {}
    ref_features, ref_codes = clf.references(denoised=pipeline == "denoised")
    for tag in SYSTEMS:
        best, dist[tag] = nearest_reference(feats[tag][idx], ref_features, metric)
        nearest[tag] = ref_codes[best]
    ice_tags = [t for t, n in SYSTEMS.items() if n not in (None, "liquid")]
    ice_d = np.concatenate([dist[t] for t in ice_tags])
    cal = calibrate_threshold(ice_d, dist["w"])
    thr = threshold if threshold is not None else cal.threshold
    src = "model" if threshold is not None else "NOT IN MODEL: valley of this data"
    print(f"\n== {key}  (threshold {thr:.4g} from {src}) ==")
    print(f"{'phase':6s} {'nearest-ref acc %':>18s} {'with threshold %':>17s} {'n':>7s}")
    n_right_nearest = n_right = n_total = 0
    for tag in ice_tags:
        true = code_of[SYSTEMS[tag]]
        ok_near = nearest[tag] == true
        ok = ok_near & (dist[tag] <= thr)
        n_right_nearest += ok_near.sum()
        n_right += ok.sum()
        n_total += len(ok)
        print(f"{SYSTEMS[tag]:6s} {100 * ok_near.mean():18.2f} {100 * ok.mean():17.2f} {len(ok):7d}")
    liquid_recall = (dist["w"] > thr).mean()
    n_all_right = n_right + (dist["w"] > thr).sum()
    print(f"{'ALL 7':6s} {100 * n_right_nearest / n_total:18.2f} {100 * n_right / n_total:17.2f} {n_total:7d}"
          f"   <- paper Table 1: {PAPER_SOAP_ONLY if pipeline == 'raw' else PAPER_DENOISED}%")
    print(f"liquid recall (distance > threshold): {100 * liquid_recall:.2f}% of {len(dist['w'])}")
    print(f"all 8 classes right: {n_all_right} of {n_total + len(dist['w'])} "
          f"({100 * n_all_right / (n_total + len(dist['w'])):.3f}%)")
    t_codes = np.where(dist["T"] > thr, 0, nearest["T"])
    vals, counts = np.unique(t_codes, return_counts=True)
    print("T (not a reference) labelled: " + ", ".join(
        f"{clf.code_names[int(v)]} {100 * c / len(t_codes):.1f}%" for v, c in zip(vals, counts)))
    print(f"margin: worst ice {cal.ice_max:.4g}, best liquid {cal.liquid_min:.4g}, gap {cal.gap:.4g} "
          f"= {100 * (cal.liquid_min - cal.ice_max) / thr:.1f}% of the threshold "
          f"(authors' O+H model: 10% euclidean, 8% cosine); valley of this data: {cal.threshold:.4g}")


def timing(model, data: Path) -> None:
    """Cost per atom on a ~4000-O frame (GCIceNet Ih frame 0 replicated 2x2x1 = 4096 O), 1 thread."""
    frame = next(read_frames(data / "md_1h_10frame.xtc", data / "md_1h.tpr", Selection(name="OW"), slice(0, 1)))
    cell = frame.cell
    shifts = [i * cell[0] + j * cell[1] for i in range(2) for j in range(2)]
    pos = np.concatenate([frame.positions + s for s in shifts])
    big = np.array([2 * cell[0], 2 * cell[1], cell[2]])
    clf = model.classifier
    n = len(pos)
    denoise(model.offline_denoiser(), pos, big, frame.pbc, model.r_max, 1)  # warm-up (TorchScript optimises on call 1-2)
    t0 = time.perf_counter()
    d = denoise(model.offline_denoiser(), pos, big, frame.pbc, model.r_max, model.iterations)
    t1 = time.perf_counter()
    feats = clf.soap_features(d.positions, big, frame.pbc)
    t2 = time.perf_counter()
    clf.classify_reduced(clf.reduce(feats), clf.metric, 1e9)
    t3 = time.perf_counter()
    it = d.iterations
    print(f"\n== cost per oxygen, {n} O, 1 thread ==")
    print(f"denoiser  {1e6 * (t1 - t0) / n / it:8.1f} us/atom/iteration  x {it} iterations = {1e6 * (t1 - t0) / n:8.1f} us/atom")
    print(f"SOAP      {1e6 * (t2 - t1) / n:8.1f} us/atom")
    print(f"PCA+dist  {1e6 * (t3 - t2) / n:8.1f} us/atom")
    print(f"total     {1e6 * (t3 - t0) / n:8.1f} us/atom per frame (target <= 500)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model.pth (default: the shipped model)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--frames", default="0:11")
    ap.add_argument("--iterations", type=int, help="denoising iterations (default: the model's)")
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    if not args.data.is_dir():
        raise SystemExit(f"GCIceNet data not found at {args.data}: pass --data")
    model = load_model(args.model)
    iterations = args.iterations if args.iterations is not None else model.iterations
    print(f"model {model.path}; {iterations} denoising iterations; frames {args.frames}")
    t0 = time.time()
    feats = reduced_features(model, args.data, parse_frames(args.frames), iterations)
    print(f"(features in {time.time() - t0:.0f} s)")
    for pipeline in ("raw", "denoised"):
        for metric in METRICS:
            evaluate(model, feats, pipeline, metric)
    evaluate_full_pipeline(model, feats)
    if not args.no_timing:
        timing(model, args.data)


if __name__ == "__main__":
    main()
