"""The ``icephase`` command line: classify, references, calibrate, train, export, inspect, build-plugin."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from .errors import CalibrationError, ClassifierError, IcephaseError, TrainingError, TrajectoryError
from .phases import MIN_OXYGEN_DISTANCE, OTHER_CRYSTAL, OTHER_CRYSTAL_NAME, TOO_CLOSE_DISTANCE, output_codes


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .configs import DenoiserConfig, TrainConfig

    d, m = TrainConfig(), DenoiserConfig()
    p = sub.add_parser("train", help="train a denoiser on ideal reference structures (paper's Algorithm 1)")
    p.add_argument("run_dir", help="folder for config.json, loss.csv, loss.png, checkpoint.pt, denoiser.pt")
    p.add_argument("--reference", action="append", default=[], metavar="SPEC",
                   help="[LABEL=]PHASE|LATTICE|FILE[@DENSITY]; repeat; default: the seven built-in phases")
    p.add_argument("--reference-weight", action="append", default=[], metavar="LABEL=W",
                   help="sample the reference LABEL (as --reference names it) W times as often as one of "
                   "weight 1; repeat; default: all alike")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (paper: 2e-4)")
    p.add_argument("--lr-final-fraction", type=float, default=d.lr_final_fraction,
                   help="cosine decay to lr * this at the last step (1 = constant)")
    p.add_argument("--sigma-max", type=float, default=d.sigma_max, help="noise sigma ~ U(0, sigma_max), Angstrom")
    p.add_argument("--scale-jitter", type=float, default=d.scale_jitter)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--r-max", type=float, default=m.r_max)
    p.add_argument("--num-layers", type=int, default=m.num_layers)
    p.add_argument("--l-max", type=int, default=m.l_max)
    p.add_argument("--num-features", type=int, default=m.num_features)
    p.add_argument("--all-parities", action="store_true",
                   help="also odd scalars / even vectors in the hidden features (slower, chirality-aware)")
    p.add_argument("--unroll", type=int, default=d.unroll,
                   help="denoising steps chained in each sample's loss (default %(default)s: the paper's loss); "
                   "more teaches the denoiser to converge in that many iterations")
    p.add_argument("--unroll-loss", default=d.unroll_loss, choices=["mean", "last"],
                   help="with --unroll: average the noise left after every step (default) or count only the "
                   "last step's (what inference with that many iterations keeps)")
    p.add_argument("--init-from", default="", metavar="MODEL",
                   help="fine-tune the denoiser of this model file or training run folder (its architecture is used)")
    p.add_argument("--new-r-max", type=float, metavar="A",
                   help="with --init-from: give the fine-tuned denoiser this graph cutoff instead of the source's "
                   "(every weight keeps its shape, so the source is a starting point, not a new training)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--resume", action="store_true", help="continue from run_dir/checkpoint.pt")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="end this session after N steps with a checkpoint (continue with --resume)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from .configs import DenoiserConfig, TrainConfig
    from .train import source_architecture, train

    model = DenoiserConfig(r_max=args.r_max, num_layers=args.num_layers, l_max=args.l_max,
                           num_features=args.num_features, all_parities=args.all_parities)
    if args.init_from:
        # fine-tuning keeps the source's architecture, whatever the size options say
        model = source_architecture(args.init_from) or model
        if args.new_r_max is not None:
            model = dataclasses.replace(model, r_max=args.new_r_max)
    elif args.new_r_max is not None:
        raise SystemExit("icephase train: --new-r-max needs --init-from (use --r-max for a new denoiser)")
    config = TrainConfig(
        references=args.reference, reference_weights=_reference_weights(args.reference_weight),
        model=model, unroll=args.unroll, unroll_loss=args.unroll_loss,
        init_from=args.init_from,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_final_fraction=args.lr_final_fraction,
        sigma_max=args.sigma_max, scale_jitter=args.scale_jitter, seed=args.seed, device=args.device,
        threads=args.threads,
    )
    out = train(config, args.run_dir, resume=args.resume, stop_after=args.stop_after)
    if out is None:
        print(f"stopped with a checkpoint in {args.run_dir}; continue with --resume")
    else:
        print(f"denoiser written to {out}; loss curve in {Path(args.run_dir) / 'loss.png'}")
    return 0


def _reference_weights(items: list[str]) -> dict[str, float]:
    """--reference-weight LABEL=W items as {label: weight} (train() checks the labels against the references)."""
    weights = {}
    for item in items:
        label, sep, value = item.partition("=")
        try:
            weights[label.strip()] = float(value)
        except ValueError:
            raise TrainingError(f"--reference-weight {item!r}: give LABEL=W with W a number, e.g. XII=3") from None
        if not sep or not label.strip():
            raise TrainingError(f"--reference-weight {item!r}: give LABEL=W, e.g. XII=3")
    return weights


# ---------------------------------------------------------------------------------------------- classify
def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="label every selected oxygen of a trajectory (denoise + SOAP)")
    p.add_argument("trajectory", help="LAMMPS dump (.lammpstrj/.dump), extxyz, or GROMACS .xtc/.trr (with --top)")
    p.add_argument("--top", help="topology for GROMACS trajectories (.tpr, .gro, .pdb)")
    p.add_argument("--select", help="which atoms are oxygens: 'element O', 'name OW' or 'type 1 [2 ...]' "
                   "(default: element O, or a dump's only type)")
    p.add_argument("--frames", help="START:STOP[:STEP] (Python slicing) or one frame number")
    p.add_argument("--model", help="model.pth from `icephase export` (default: the shipped model)")
    p.add_argument("--no-denoise", action="store_true", help="classify the raw positions (SOAP only)")
    p.add_argument("--iterations", type=int, help="denoising iterations (default: the model's)")
    p.add_argument("--tolerance", type=float, help="stop denoising once the largest step is below this (A)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], help="default: the model's")
    p.add_argument("--threshold", type=float, help="liquid threshold (default: the model's calibrated one)")
    p.add_argument("--boundary", type=int, metavar="ROUNDS",
                   help="rounds of the boundary step that extends ice labels over its first layers next to "
                        "liquid (default: the model's; 0: off; always off with --no-denoise)")
    p.add_argument("--no-other-crystal", action="store_true",
                   help="label liquid the molecules whose environment repeats among their neighbours but matches no "
                        "reference, and those they enclose (default: 'other crystal', code -2; always liquid with "
                        "--no-denoise); and keep crystal labels isolated in liquid (one or two molecules)")
    p.add_argument("--no-phase-vote", action="store_true",
                   help="keep every ice-labelled molecule's own phase (default: the model's phase vote, where it has "
                        "one; always off with --no-denoise)")
    p.add_argument("--write-denoised", metavar="FILE", help="also write the denoised frames (with labels) to FILE")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of the denoiser (numpy's BLAS, or torch's for a TorchScript denoiser; default 1)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quiet", action="store_true", help="no per-frame table")
    p.add_argument("--out", required=True, help="output: .csv, .lammpstrj/.dump or .extxyz (by extension)")
    p.set_defaults(func=_cmd_classify)


def _cmd_classify(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from tqdm import tqdm

    from .pipeline import Pipeline, set_threads
    from .label_writers import open_label_writer
    from .readers import open_frames
    from .selection import Selection, parse_frames

    set_threads(args.threads)
    select = Selection.parse(args.select)
    frames = parse_frames(args.frames)
    pipeline = Pipeline.from_path(
        args.model, device=args.device, use_denoiser=not args.no_denoise, iterations=args.iterations,
        tolerance=args.tolerance, metric=args.metric, threshold=args.threshold, boundary_rounds=args.boundary,
        other_crystal=not args.no_other_crystal, phase_vote=not args.no_phase_vote,
    )
    names = pipeline.classifier.code_names
    source, n_frames = open_frames(args.trajectory, args.top, select, frames)
    total = len(range(*frames.indices(n_frames)))
    if total == 0:
        what = f"--frames {args.frames} selects none of its {n_frames} frames" if n_frames else "it is empty"
        raise TrajectoryError(f"no frame to classify in {args.trajectory}: {what}; nothing was written")
    columns = output_codes(names)
    if not args.quiet:
        mode = "SOAP only (no denoising)" if args.no_denoise else f"denoise x{pipeline.iterations} + SOAP"
        boundary = f", boundary step {pipeline.boundary.rounds} round(s)" if pipeline.boundary.rounds else ""
        print(f"# {mode}{boundary}, metric {pipeline.metric}, threshold {pipeline.threshold:.4g}; molecules per "
              f"phase and the largest ice cluster ({pipeline.boundary.shell:g} A) per frame:")
        # one word per column ("other crystal" -> "other"), so the table splits on whitespace
        print("frame  " + " ".join(f"{names[c].split()[0]:>7s}" for c in columns) + "  largest")
    with ExitStack() as stack:
        # both outputs go to <file>.partial until the last frame is done (label_writers.open_label_writer)
        writers = [stack.enter_context(open_label_writer(args.out, names))]
        if args.write_denoised:
            writers.append(stack.enter_context(open_label_writer(args.write_denoised, names)))
        try:
            for frame in tqdm(source, total=total,
                              desc="classify", unit="frame", disable=args.quiet):
                if frame.n_atoms == 0:
                    raise TrajectoryError(f"frame {frame.index} of {args.trajectory} has no selected atoms")
                result = pipeline.run(frame.positions, frame.cell, frame.pbc)
                if result.n_too_close:
                    first = int(np.flatnonzero(result.too_close)[0])
                    print(f"icephase classify: warning: frame {frame.index}: {result.n_too_close} oxygens are "
                          f"closer than {MIN_OXYGEN_DISTANCE:g} A to another one (first: index {first}): not water; "
                          f"labelled liquid with distance {TOO_CLOSE_DISTANCE:g} and left out of the others' "
                          "denoising and SOAP", file=sys.stderr)
                labels = [names[c] for c in result.codes]
                clusters = result.clusters.ids
                writers[0].write(frame, result.codes, labels, result.distances, clusters=clusters)
                if args.write_denoised:
                    writers[1].write(frame, result.codes, labels, result.distances, positions=result.positions,
                                     clusters=clusters)
                if not args.quiet:
                    counts = " ".join(f"{np.count_nonzero(result.codes == c):7d}" for c in columns)
                    tqdm.write(f"{frame.index:5d}  {counts}  {result.clusters.largest:7d}")
        except (IcephaseError, OSError) as exc:
            # the outputs keep their old contents; say where the finished frames are, if anywhere (same class,
            # so that main reports it as it would the bare error)
            notes = "; ".join(w.abandon() for w in writers)
            raise type(exc)(f"{exc}. {notes}") from exc
    print(f"labels written to {args.out}" + (f"; denoised frames to {args.write_denoised}" if args.write_denoised else ""))
    return 0


# -------------------------------------------------------------------------------------------- references
def _add_references(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("references", help="list the reference structures, or export them as files")
    p.add_argument("--reference", action="append", default=[], metavar="SPEC",
                   help="[LABEL=]PHASE|LATTICE|FILE[@DENSITY]; repeat; default: the seven built-in phases")
    p.add_argument("--export", metavar="DIR", help="write each reference (oxygen sites) to DIR")
    p.add_argument("--format", default="extxyz", help="ASE format for --export (extxyz, cif, lammps-data, ...)")
    p.add_argument("--min-width", type=float, default=0.0, help="replicate to at least this box width (A)")
    p.set_defaults(func=_cmd_references)


def _cmd_references(args: argparse.Namespace) -> int:
    from ase.io import write

    from .references import load_references, supercell

    refs = load_references(args.reference)
    print(f"{'code':>4s}  {'name':8s} {'source':16s} {'O/cell':>6s} {'density':>8s}  cell lengths (A)")
    for code, ref in enumerate(refs, start=1):
        lengths = " x ".join(f"{x:.3f}" for x in ref.atoms.cell.lengths())
        print(f"{code:4d}  {ref.name:8s} {ref.source:16s} {len(ref.atoms):6d} {ref.density:8.3f}  {lengths}")
    if args.export:
        out = Path(args.export)
        out.mkdir(parents=True, exist_ok=True)
        ext = {"extxyz": "extxyz", "cif": "cif", "lammps-data": "data", "vasp": "vasp", "xyz": "xyz"}.get(args.format, args.format)
        for ref in refs:
            atoms = supercell(ref.atoms, args.min_width) if args.min_width else ref.atoms
            path = out / f"{ref.name}.{ext}"
            write(path, atoms, format=args.format)
            print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------- calibrate
def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="choose the ice/liquid threshold from labelled trajectories")
    p.add_argument("--ice", action="append", default=[], metavar="TRAJ[,TOP]",
                   help="a trajectory that is all ice (repeat); GROMACS files as TRAJ,TOP")
    p.add_argument("--noisy-references", type=float, action="append", default=[], metavar="SIGMA",
                   help="also count as ice the model's own references with Gaussian noise of SIGMA A "
                        "(repeatable): covers phases you have no MD of")
    p.add_argument("--liquid", action="append", required=True, metavar="TRAJ[,TOP]", help="an all-liquid trajectory")
    p.add_argument("--model", help="model.pth (default: the shipped model)")
    p.add_argument("--select", help="oxygen selection, as for classify")
    p.add_argument("--frames", help="START:STOP[:STEP] of each trajectory")
    p.add_argument("--no-denoise", action="store_true", help="calibrate the SOAP-only (raw) threshold")
    p.add_argument("--metric", choices=["euclidean", "cosine"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plot", default="threshold_histogram.png", help="histogram PNG (default %(default)s)")
    p.add_argument("--write-model", metavar="FILE",
                   help="write a copy of the model with this threshold stored (FILE may equal --model)")
    p.add_argument("--force", action="store_true",
                   help="store the threshold with --write-model even when the ice and liquid distances overlap")
    p.set_defaults(func=_cmd_calibrate)


def _distances(pipeline, specs: list[str], select, frames, option: str) -> np.ndarray:
    """Distances of every measured oxygen of every frame of ``specs`` (oxygens too close to another one
    have no distance and are left out)."""
    from tqdm import tqdm

    from .readers import open_frames

    out = []
    for spec in specs:
        traj, _, top = spec.partition(",")
        n_before = len(out)
        source, n_frames = open_frames(traj, top or None, select, frames)
        total = len(range(*(frames or slice(None)).indices(n_frames)))
        for frame in tqdm(source, total=total, desc=Path(traj).name, unit="frame"):
            result = pipeline.run(frame.positions, frame.cell, frame.pbc)
            out.append(result.distances[result.distances >= 0.0])
        if len(out) == n_before:
            raise CalibrationError(
                f"{option} {spec}: no frames (an empty file, or --frames selects none of its frames)"
            )
    return np.concatenate(out)


def _noisy_water(clean: np.ndarray, cell: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean`` with i.i.d. Gaussian noise, redrawn for any oxygen that lands closer than
    MIN_OXYGEN_DISTANCE to another. Independent noise puts a pair that close now and then (a 4-5 sigma
    event at 0.15 A); water never does, and the pipeline would leave the pair out and call its neighbours'
    holed environments liquid, which is not what the calibration should measure."""
    from .geometry import too_close

    noisy = clean + rng.normal(0.0, sigma, clean.shape)
    for _ in range(100):
        close = too_close(noisy, cell, (True, True, True), MIN_OXYGEN_DISTANCE)
        if not close.any():
            return noisy
        noisy[close] = clean[close] + rng.normal(0.0, sigma, (int(close.sum()), 3))
    raise CalibrationError(f"noise of {sigma} A keeps putting oxygens closer than {MIN_OXYGEN_DISTANCE} A: use less")


def _noisy_reference_distances(pipeline, sigma: float, min_width: float = 24.0, seed: int = 0) -> np.ndarray:
    """Distances of the references themselves with thermal-like Gaussian noise, after the pipeline."""
    from .model_file import training_reference_specs
    from .references import load_references, supercell

    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    out = []
    references = load_references(training_reference_specs(pipeline.model.metadata))
    for ref in tqdm(references, desc=f"noisy references ({sigma:g} A)", unit="phase"):
        atoms = supercell(ref.atoms, min_width)
        noisy = _noisy_water(atoms.positions, atoms.cell.array, sigma, rng)
        result = pipeline.run(noisy, atoms.cell.array, (True, True, True))
        out.append(result.distances[result.distances >= 0.0])
    return np.concatenate(out)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate_threshold, plot_histogram
    from .model_file import save_model
    from .pipeline import Pipeline, set_threads
    from .selection import Selection, parse_frames

    set_threads(args.threads)
    # the threshold does not matter for distances; 0 avoids needing an existing calibration
    pipeline = Pipeline.from_path(args.model, use_denoiser=not args.no_denoise, metric=args.metric, threshold=0.0)
    select, frames = Selection.parse(args.select), parse_frames(args.frames)
    if not args.ice and not args.noisy_references:
        raise CalibrationError("give ice data: --ice TRAJ and/or --noisy-references SIGMA")
    parts = [_distances(pipeline, args.ice, select, frames, "--ice")] if args.ice else []
    parts += [_noisy_reference_distances(pipeline, s) for s in args.noisy_references]
    ice = np.concatenate(parts)
    liquid = _distances(pipeline, args.liquid, select, frames, "--liquid")
    cal = calibrate_threshold(ice, liquid)
    key = f"{'raw' if args.no_denoise else 'denoised'}/{pipeline.metric}"
    print(f"{key}: {cal.summary()}")
    plot_histogram(ice, liquid, cal, args.plot, pipeline.metric, title=f"{key}: gap {cal.gap:.3g}")
    print(f"histogram written to {args.plot}")
    if args.write_model and not cal.separated and not args.force:
        raise CalibrationError(
            f"the ice and liquid distances overlap (worst ice {cal.ice_max:.4g} >= best liquid {cal.liquid_min:.4g}; "
            f"see {args.plot}): no threshold separates them, so none was written to {args.write_model}. Check that "
            "--ice and --liquid are not swapped and that each holds only ice or only liquid; pass --force to "
            "store the least-bad threshold anyway"
        )
    if args.write_model:
        model = pipeline.model
        model.classifier.thresholds[key] = cal.threshold
        model.metadata["thresholds"] = model.classifier.thresholds
        save_model(args.write_model, model.denoiser, model.classifier, model.metadata, model.weights,
                   model.compact)
        print(f"model with threshold {key} = {cal.threshold:.6g} written to {args.write_model}")
    return 0


# ------------------------------------------------------------------------------------ export and inspect
def _add_export(sub: argparse._SubParsersAction) -> None:
    from .classifier import SoapSettings

    p = sub.add_parser("export", help="write one model.pth: trained denoiser + fitted classifier + metadata")
    p.add_argument("run_dir", help="a training run folder (from `icephase train`), or a model.pth whose "
                   "denoiser to re-export with a freshly fitted classifier")
    p.add_argument("--out", required=True, help="the model file to write, e.g. model.pth")
    p.add_argument("--iterations", type=int, default=8, help="default denoising iterations (default %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.0, help="default early-stop step size, A (0: never)")
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    d = SoapSettings()
    p.add_argument("--r-cut", type=float, default=d.r_cut, help="SOAP cutoff in A (default %(default)s)")
    p.add_argument("--n-max", type=int, default=d.n_max, help="SOAP radial basis size (default %(default)s)")
    p.add_argument("--l-max", type=int, default=d.l_max, help="SOAP angular degree (default %(default)s)")
    p.add_argument("--sigma", type=float, default=d.sigma,
                   help="SOAP Gaussian width in A (default %(default)s); the reach is r_cut + 3.7 sigma")
    p.add_argument("--threshold", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. denoised/euclidean=17.5 (usually set afterwards with `icephase calibrate`)")
    p.add_argument("--phase-vote-radius", type=float, default=None, metavar="A",
                   help="radius of the phase vote (phase_vote.py): an ice-labelled molecule takes the phase most "
                   "ice-labelled molecules within it carry; 0: off (default 5)")
    p.add_argument("--ideal-references-only", action="store_true",
                   help="do not add the references as the denoiser leaves them (docs/validation.md says why they "
                   "are there)")
    p.add_argument("--keep-classifier", action="store_true",
                   help="from a model file: store its denoiser afresh (the compact, faster form where it has one; "
                   "the same weights) and keep its classifier, thresholds and settings; the options above "
                   "are then not used")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .classifier import SoapSettings, fit_classifier
    from .denoised_references import DenoisedReferenceSettings
    from .export import export_run, recompile_denoiser, training_references
    from .phase_vote import DEFAULT_RADIUS, PhaseVoteSettings
    from .references import load_references

    if args.keep_classifier:
        out = recompile_denoiser(args.run_dir, args.out)
        print(f"model written to {out} ({out.stat().st_size / 1e6:.1f} MB): denoiser stored afresh, "
              "classifier and settings kept")
        return 0
    # the thresholds first: a typo in one should not wait for the classifier fit
    thresholds = {}
    for item in args.threshold:
        key, _, value = item.partition("=")
        try:
            thresholds[key.strip()] = float(value)
        except ValueError:
            raise ClassifierError(f"--threshold {item!r}: give KEY=VALUE with a number, e.g. "
                                  "denoised/euclidean=17.5") from None
    references = load_references(training_references(args.run_dir))
    soap = SoapSettings(r_cut=args.r_cut, n_max=args.n_max, l_max=args.l_max, sigma=args.sigma)
    clf = fit_classifier(references, soap, progress=True)
    clf.metric = args.metric
    clf.phase_vote = PhaseVoteSettings(DEFAULT_RADIUS if args.phase_vote_radius is None else args.phase_vote_radius)
    denoised = None if args.ideal_references_only else DenoisedReferenceSettings()
    out = export_run(args.run_dir, clf, args.out, args.iterations, args.tolerance, references, denoised, thresholds)
    print(f"model written to {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _add_configure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configure", help="change a model file's boundary-step settings or add its census tables, "
                       "keeping its denoiser and classifier")
    p.add_argument("model", help="model.pth to start from")
    p.add_argument("--out", required=True, help="the model file to write (may be the same file)")
    p.add_argument("--boundary", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the boundary step (`icephase inspect` prints them), e.g. rounds=4, "
                   "support_radius=5, min_support=0.5")
    p.add_argument("--site-table", action="store_true",
                   help="fit the censuses' tables (each phase's sites and their shares; the ring signatures of "
                   "its 4-bonded phases) from the built-in references of the model's phases: for files made "
                   "before they existed")
    p.set_defaults(func=_cmd_configure)


def _cmd_configure(args: argparse.Namespace) -> int:
    from .export import add_site_table, configure_boundary
    from .model_file import read_classifier

    if not args.boundary and not args.site_table:
        raise ClassifierError("icephase configure: give --boundary KEY=VALUE or --site-table")
    if args.site_table:
        out = add_site_table(args.model, args.out)
        written = read_classifier(out)
        sites, rings = written.sites, written.rings
        print(f"model written to {out}: {len(sites)} sites, site census of {len(sites.counted_codes())} phases, "
              f"ring census of {len(rings.counted_codes())} ({len(rings)} ring signatures)")
        if not args.boundary:
            return 0
        args.model = out
    changes = {}
    for item in args.boundary:
        key, sep, value = item.partition("=")
        if not sep:
            raise ClassifierError(f"--boundary {item!r}: give KEY=VALUE, e.g. rounds=4")
        changes[key.strip()] = value.strip()
    out = configure_boundary(args.model, args.out, changes)
    print(f"model written to {out}: boundary step {read_classifier(out).boundary}")
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print a model file's metadata")
    p.add_argument("model", nargs="?", help="model.pth (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print the raw metadata JSON")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from .model_file import SHIPPED_MODEL, read_classifier, read_metadata

    path = args.model or SHIPPED_MODEL
    meta = read_metadata(path)
    clf = read_classifier(path)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    d = meta["denoiser"]
    print(f"model            {path}")
    print(f"format           {meta['format']} v{meta['format_version']} (icephase {meta['icephase_version']})")
    print(f"species          {', '.join(meta['species'])} (lengths in {meta['length_unit']})")
    # files from before the compact form store the scripted nequip network
    module = meta.get("denoiser_module", "nequip")
    form = {"compact": "stored in compact form", "nequip": "stored as the nequip network"}.get(module, module)
    print(f"denoiser         NequIP, {d['num_layers']} layers, r_max {d['r_max']} A, l_max {d['l_max']}, "
          f"{d['num_features']} features; receptive field {meta['receptive_field']} A; {form}")
    print(f"ghost cutoff     {meta['ghost_cutoff']} A (LAMMPS: comm_modify cutoff >= this)")
    print(f"denoising        {meta['iterations']} iterations, tolerance {meta['tolerance']} A")
    s = meta["soap"]
    print(f"SOAP             r_cut {s['r_cut']} A, n_max {s['n_max']}, l_max {s['l_max']}, sigma {s['sigma']}; "
          f"PCA {clf.pca_components.shape[0]}")
    n_den = int(clf.ref_denoised.sum())
    print(f"references       {len(clf.ref_codes) - n_den} ideal environments, {n_den} as the denoiser leaves them")
    print(f"metric           {meta['metric']}")
    for key, value in sorted(meta["thresholds"].items()):
        print(f"threshold        {key} = {value:.6g}")
    b = clf.boundary
    route_b = (f"; or >= {b.min_ordered_ice_bonds} such bonds to ice (4-{b.route_b_max_neighbours} neighbours)"
               if b.min_ordered_ice_bonds > 0 else "")
    print(f"boundary step    {b.rounds} rounds: liquid-labelled O next to ice takes its phase if its first shell "
          f"({b.shell} A) is ordered (>= {b.min_ordered_bonds} of 4 bonds staggered/eclipsed){route_b}"
          + (f"; it stays ice only where >= {b.min_support:.0%} of the O within {b.support_radius:g} A are ice"
             if b.support_radius > 0 else "")
          + (f"; ice clusters of fewer than {b.small_cluster_size} O and {b.small_cluster_share:.0%} of all"
             + (" that do not reach across the box" if b.hold_spanning else "")
             + f" get {b.small_cluster_rounds} more rounds"
             + (", checked with the share of ice a convex surface has" if b.convex_support and b.support_radius > 0
                else "") if b.small_cluster_rounds > 0 else ""))
    vote = clf.phase_vote.radius
    print("phase vote       " + (f"an ice-labelled O takes the phase most ice-labelled O within {vote:g} A carry"
                                 if vote > 0 else "off"))
    from .other_crystal import (  # `inspect` alone needs it
        ENCLOSED_FRACTION,
        MIN_REPEATS,
        OTHER_MAJORITY,
        REPEAT_TEST_ITERATIONS,
    )
    from .other_crystal import RADIUS as OTHER_RADIUS

    second = (f" at the denoised positions or after {REPEAT_TEST_ITERATIONS} iterations"
              if meta["iterations"] > REPEAT_TEST_ITERATIONS else "")
    print("codes            " + ", ".join(f"{p['code']} {p['name']}" for p in meta["phases"])
          + f"; {OTHER_CRYSTAL} {OTHER_CRYSTAL_NAME} (a liquid-labelled molecule whose environment repeats "
          f"among {MIN_REPEATS}+ neighbours within {OTHER_RADIUS:g} A{second}, or whose first shell is >= "
          f"{ENCLOSED_FRACTION:.0%} such molecules, or a phase-labelled one with more than "
          f"{OTHER_MAJORITY:.0%} of the crystal labels within {OTHER_RADIUS:g} A such molecules; any model); "
          "crystal labels isolated in liquid (one molecule, or a pair): liquid")
    from .site_census import MAX_SITE_DISTANCE, MIN_NAMED  # `inspect` alone needs it

    counted = clf.sites.counted_codes()
    print("site census      " + ("; ".join(
        f"{clf.names[c - 1]} " + ":".join(f"{x:.3f}" for x in clf.sites.shares[clf.sites.codes == c])
        for c in counted) + f" (sites' shares; an ice cluster with {MIN_NAMED}+ of a phase's molecules whose shares "
        f"differ by more than {MAX_SITE_DISTANCE:g}: other crystal)" if len(counted) else
        "none (no site table: `icephase configure --site-table` adds one)"))
    from .ring_census import MAX_FOREIGN

    ringed = clf.rings.counted_codes()
    print("ring census      " + (", ".join(
        f"{clf.names[c - 1]} {int(np.sum(clf.rings.codes == c))}" for c in ringed)
        + f" (ring signatures; an ice cluster with {MIN_NAMED}+ molecules of a phase whose rings see crystal only, "
        f"more than {MAX_FOREIGN:.0%} of them on signatures the phase has not: other crystal)" if len(ringed) else
        "none (no ring table: `icephase configure --site-table` adds one)"))
    steps = meta.get("training", {}).get("steps_done")
    if steps is not None:
        print(f"training         {steps} steps")
    return 0


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw phase fractions (and the largest ice cluster) per frame from a labels .csv")
    p.add_argument("labels", help="a .csv written by `icephase classify --out labels.csv`")
    p.add_argument("--model", help="the model whose phase names and colours to use (default: the shipped model)")
    p.add_argument("--out", help="the PNG to write (default: the .csv's name with .png)")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    import csv

    from .model_file import SHIPPED_MODEL, read_metadata
    from .render import plot_phase_fractions

    path = Path(args.labels)
    if not path.is_file():
        raise TrajectoryError(f"labels file {path} does not exist: write one with `icephase classify ... --out {path}`")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"frame", "code"} - set(reader.fieldnames or [])
        if missing:
            raise TrajectoryError(f"{path} is not an icephase labels .csv (no column {', '.join(sorted(missing))}): "
                                  "write one with `icephase classify ... --out labels.csv`")
        rows = list(reader)
    if not rows:
        raise TrajectoryError(f"{path} holds no labels")
    frame = np.array([int(r["frame"]) for r in rows])
    code = np.array([int(r["code"]) for r in rows])
    frames = np.unique(frame)
    # cluster 1 is the largest of its frame (older files have no cluster column)
    largest = None
    if "cluster" in rows[0]:
        cluster = np.array([int(r["cluster"]) for r in rows])
        largest = [int(np.count_nonzero((frame == f) & (cluster == 1))) for f in frames]
    meta = read_metadata(args.model or SHIPPED_MODEL)
    names = [p["name"] for p in sorted(meta["phases"], key=lambda p: p["code"]) if p["code"] > 0]
    out = Path(args.out) if args.out else path.with_suffix(".png")
    plot_phase_fractions(frames, [code[frame == f] for f in frames], names, out, xlabel="frame", largest=largest)
    print(f"{len(frames)} frames plotted to {out}")
    return 0


def _add_ovito_script(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ovito-script", help="write an OVITO script modifier that names and colours the phases")
    p.add_argument("--model", help="model.pth whose code table to use (default: the shipped model)")
    p.add_argument("--column", default="c_phase[1]",
                   help="the dump column holding the phase code (default %(default)s; `code` for icephase classify dumps)")
    p.add_argument("--out", required=True, help="the .py file to write")
    p.set_defaults(func=_cmd_ovito_script)


def _cmd_ovito_script(args: argparse.Namespace) -> int:
    from .model_file import SHIPPED_MODEL, read_metadata
    from .render import ovito_modifier_source

    meta = read_metadata(args.model or SHIPPED_MODEL)
    names = [p["name"] for p in sorted(meta["phases"], key=lambda p: p["code"]) if p["code"] > 0]
    Path(args.out).write_text(ovito_modifier_source(names, args.column))
    print(f"OVITO script modifier written to {args.out}: in OVITO, Add modification -> Python script -> load it")
    return 0


def _add_build_plugin(sub: argparse._SubParsersAction) -> None:
    from .plugin_build import add_arguments

    p = sub.add_parser("build-plugin", help="build the LAMMPS plugin (compute icephase) for this Python environment "
                       "(needs cmake and g++; a few minutes)")
    add_arguments(p)
    p.set_defaults(func=_cmd_build_plugin)


def _cmd_build_plugin(args: argparse.Namespace) -> int:
    from .plugin_build import run

    return run(args)


# ------------------------------------------------------------------------------------------ lammps-data
def _parse_reps(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").replace(" ", ",").split(",")
    parts = [p for p in parts if p]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--reps wants three integers like 4,4,3 (got {text!r})") from None
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"--reps wants three positive integers like 4,4,3 (got {text!r})")
    return vals  # type: ignore[return-value]


def _add_lammps_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lammps-data",
        help="write a full-atom TIP4P/Ice ice structure (O + 2 H, ice rules) as a LAMMPS data file",
        description="Build a proton-disordered ice (GenIce2 network, rigid TIP4P geometry with O on the "
                    "lattice site) and write it as a LAMMPS data file (units real, atom_style full), plus "
                    "optionally the matching TIP4P/Ice settings include file.",
    )
    p.add_argument("lattice", help="phase name (Ih, Ic, II, III, VI, VII, sI) or GenIce2 lattice (1h, CS2, ...)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--min-width", type=float,
                      help="repeat until every box width is at least this (A); default 20 when --reps is not given")
    size.add_argument("--reps", type=_parse_reps, help="unit-cell repetitions, e.g. 4,4,3")
    p.add_argument("--density", type=float, help="rescale the oxygen sites to this density (g/cm3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the proton arrangement (default %(default)s)")
    p.add_argument("--axis-order", default="xyz",
                   help="relabel the axes of an orthogonal box, e.g. xzy puts Ih's c axis along z")
    p.add_argument("--out", required=True, help="the data file to write")
    p.add_argument("--settings", help="also write the TIP4P/Ice settings include file here")
    p.set_defaults(func=_cmd_lammps_data)


def _cmd_lammps_data(args: argparse.Namespace) -> int:
    from .full_atom_ice import build_tip4p_ice
    from .lammps_data import write_tip4p_ice_data
    from .tip4p_ice import write_tip4p_ice_settings

    min_width = args.min_width if (args.min_width is not None or args.reps is not None) else 20.0
    ice = build_tip4p_ice(args.lattice, reps=args.reps, min_width=min_width, density=args.density, seed=args.seed,
                          axis_order=args.axis_order)
    info = write_tip4p_ice_data(args.out, ice)
    box = " x ".join(f"{x:.3f}" for x in info.lengths)
    tilt = f", tilts xy xz yz {' '.join(f'{t:.3f}' for t in info.tilts)}" if info.triclinic else ""
    print(f"wrote {info.path}: {info.phase} ({info.lattice}) reps {'x'.join(map(str, info.reps))}, "
          f"{info.n_molecules} molecules ({info.n_atoms} atoms), box {box} A{tilt}, {info.density:.4f} g/cm3")
    if args.settings:
        print(f"wrote {write_tip4p_ice_settings(args.settings)} (include it after read_data)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``icephase`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="icephase",
        description="Classify water oxygens into ice phases (Ih, Ic, II, III, VI, VII, sI) or liquid.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_classify(sub)
    _add_references(sub)
    _add_calibrate(sub)
    _add_train(sub)
    _add_export(sub)
    _add_configure(sub)
    _add_inspect(sub)
    _add_plot(sub)
    _add_ovito_script(sub)
    _add_build_plugin(sub)
    _add_lammps_data(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``icephase`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status (2: an error,
    reported in one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (IcephaseError, OSError) as exc:
        # IcephaseError: every problem icephase itself finds, with a message that says how to fix it.
        # OSError: the system's refusal of a path the user gave (a missing folder, no permission, a full
        # disk); its message names the path. Anything else is a bug and keeps its traceback.
        print(f"icephase {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
