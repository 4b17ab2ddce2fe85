#!/usr/bin/env python3
"""MD of ice next to water with the mW model (cheap), for benchmarks/interfaces.py.

mW (Molinero & Moore 2009) is a one-site water model (LAMMPS ``pair_style sw``) whose ice and liquid
structures match the oxygen structure of atomistic water; its melting point is 274.6 K. Every system is
built from GenIce2's oxygen sites, so the ground truth is known by construction:

  slab_*     an ice slab whose interfaces face z: the crystal is built across the whole box, the atoms
             outside the middle half are melted at 400 K with the middle half held fixed, cooled to the
             target temperature, then everything is released (NPT along z, 1 atm). Truth: the atoms that
             were held (``ice_ids``); the interface planes are the held slab's faces, moved with the slab's
             centre and scaled with the box length (``slab`` in the json).
  seed_R*    a spherical ice Ih seed of radius R cut from the lattice and put into supercooled liquid at
             230 K: liquid within 2.5 A of a seed atom is removed, the liquid relaxes around the held seed,
             then everything is released (NPT) and frames are taken 3 and 5 ps later. Truth: ``seed_ids``,
             and NAME.inherent.lammpstrj: each frame's inherent structure (its energy minimised, which
             removes the thermal motion without a model of ours or CHILL+'s), where the benchmark finds
             which molecules are crystalline, seed or not (the seed's surface disorders after release).
             seed_R*_b: a second sample of each radius, made the same way with other random seeds.
  liquid_*   supercooled liquid (no crystal anywhere).
  surface_*  an ice Ih slab with free basal or prismatic surfaces (vacuum above and below; the ice/vapour interface of
             premelting studies): the crystal is built ~30 A thick in a box 40 A longer, then NVT at the
             target temperature. Every molecule is ice at the start; the benchmark reports labels by depth
             below the outermost molecular layer.

Writes OUT/NAME.lammpstrj (id type element x y z, oxygens only) and OUT/NAME.json for each system.

    .venv/bin/python scripts/make_interface_md.py [--out runs/interfaces] [--only NAME ...] [--list]
        [--inherent-structures]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from icephase_lmp.references import genice_cell, scaled_to_density  # noqa: E402
from icephase_lmp.trajectory import read_frames  # noqa: E402

#: mW parameters (Molinero & Moore, J. Phys. Chem. B 113, 4008 (2009)) in LAMMPS sw file order:
#: epsilon (kcal/mol) sigma (A) a lambda gamma cos(theta0) A B p q tol
MW_SW = "O O O 6.189 2.3925 1.80 23.15 1.20 -0.333333333333 7.049556277 0.6022245584 4.0 0.0 0.0\n"
MW_MASS = 18.015
MW_TM = 274.6  # K, melting point of mW ice Ih
TIMESTEP_FS = 10.0
#: densities (g/cm3) of the crystals as built: mW ice Ih/Ic near its melting point; the empty sI
#: framework at GenIce2's own density (mW's is within 2% of it)
ICE_DENSITY = {"1h": 0.978, "1c": 0.978, "CS1": None}


@dataclass(frozen=True)
class Slab:
    name: str
    lattice: str  # GenIce2 lattice name
    #: which cell axis of the GenIce2 cell becomes z (the interface normal): for 1h, c is the basal normal
    normal: int
    temperature: float
    width: float = 26.0  # lateral box size (A), at least
    length: float = 70.0  # box length along the normal (A), at least


@dataclass(frozen=True)
class Seed:
    name: str
    radius: float
    temperature: float = 230.0
    box: float = 52.0
    #: 0: the first set's random seeds (fixed by R); else seeds from the name (seed_of): an independent sample
    sample: int = 0
    #: GenIce2 lattice of the seed: 1h, or CS1 (an empty sI hydrate seed, HYDRATE_SEEDS)
    lattice: str = "1h"


@dataclass(frozen=True)
class Surface:
    name: str
    temperature: float
    #: which cell axis of GenIce2's Ih cell faces the vacuum: 2 (c) basal, 0 (a) prismatic
    normal: int = 2
    width: float = 26.0  # lateral box size (A), at least
    thickness: float = 30.0  # ice slab along z (A), at least
    vacuum: float = 40.0  # empty space along z (A): more than the SOAP reach on both sides


@dataclass(frozen=True)
class Liquid:
    name: str
    temperature: float
    box: float = 50.0


SYSTEMS = [
    Slab("slab_ih_basal_250K", "1h", 2, 250.0),
    Slab("slab_ih_basal_270K", "1h", 2, 270.0),
    Slab("slab_ih_prism_250K", "1h", 0, 250.0),
    Slab("slab_ih_prism_270K", "1h", 0, 270.0),
    Slab("slab_ic_250K", "1c", 2, 250.0),
    Slab("slab_si_240K", "CS1", 2, 240.0, width=24.0, length=72.0),
    *(Seed(f"seed_R{r}", float(r)) for r in (8, 10, 12, 14, 16)),
    *(Seed(f"seed_R{r}_b", float(r), sample=1) for r in (8, 10, 12, 14, 16)),
    Liquid("liquid_220K", 220.0),
    Surface("surface_ih_basal_230K", 230.0),
    Surface("surface_ih_basal_260K", 260.0),
    Surface("surface_ih_prism_230K", 230.0, normal=0),
]


#: run only when named with --only, and best into a folder of their own (--out): benchmarks/interfaces.py reads
#: every system of its folder as ice Ih. An empty sI seed in supercooled mW (the ring census on a nucleus).
HYDRATE_SEEDS = [Seed("seed_si_R16", 16.0, temperature=240.0, lattice="CS1")]


def seed_of(name: str) -> int:
    """A velocity seed fixed by the system's name (Python's hash() of a str changes from run to run)."""
    return zlib.crc32(name.encode()) % 900000 + 1000


def lmp_executable() -> str:
    exe = Path(sys.executable).with_name("lmp")
    return str(exe) if exe.exists() else "lmp"


def oriented_cell(lattice: str, normal: int):
    """The lattice's unit cell at mW density with cell axis ``normal`` turned into z (cells are orthogonal)."""
    atoms = genice_cell(lattice)
    if ICE_DENSITY[lattice]:
        atoms = scaled_to_density(atoms, ICE_DENSITY[lattice])
    cell = atoms.cell.array
    if np.count_nonzero(cell - np.diag(np.diag(cell))) > 0:
        raise ValueError(f"GenIce2 cell of {lattice} is not orthogonal")
    order = [a for a in range(3) if a != normal] + [normal]
    return atoms.positions[:, order], np.diag(cell)[order]


def repeat(pos: np.ndarray, lengths: np.ndarray, reps) -> tuple[np.ndarray, np.ndarray]:
    shifts = np.array([(i, j, k) for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])])
    out = (pos[None, :, :] + (shifts * lengths)[:, None, :]).reshape(-1, 3)
    return out, lengths * np.asarray(reps)


def face_near(z: np.ndarray, target: float, period: float) -> float:
    """The middle of the widest gap between layers of atoms along z within half a period of ``target``."""
    layers = np.unique(np.round(z, 2))
    mids, gaps = 0.5 * (layers[1:] + layers[:-1]), np.diff(layers)
    near = np.abs(mids - target) <= 0.5 * period
    return float(mids[near][np.argmax(gaps[near])])


def write_data(path: Path, pos: np.ndarray, box: np.ndarray) -> None:
    lines = [f"mW oxygens ({len(pos)} molecules)", "", f"{len(pos)} atoms", "1 atom types", ""]
    lines += [f"0.0 {box[0]:.8f} xlo xhi", f"0.0 {box[1]:.8f} ylo yhi", f"0.0 {box[2]:.8f} zlo zhi", ""]
    lines += ["Masses", "", f"1 {MW_MASS}", "", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {x:.8f} {y:.8f} {z:.8f}" for i, (x, y, z) in enumerate(pos % box)]
    path.write_text("\n".join(lines) + "\n")


HEADER = """units real
atom_style atomic
boundary p p p
{read}
pair_style sw
pair_coeff * * mW.sw O
neighbor 2.0 bin
timestep {dt}
thermo 500
thermo_style custom step temp press density pe
"""


def run(name: str, script: str, out: Path) -> float:
    (out / "mW.sw").write_text(MW_SW)
    inp = out / f"{name}.in"
    inp.write_text(script)
    start = time.time()
    cmd = [lmp_executable(), "-in", inp.name, "-log", f"{name}.log", "-screen", "none", "-nocite"]
    proc = subprocess.run(cmd, cwd=out, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        tail = (out / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"LAMMPS failed for {name}; see {out / (name + '.log')}:\n" + "\n".join(tail))
    return time.time() - start


def dump_lines(name: str, every: int) -> str:
    return (f"dump d all custom {every} {name}.lammpstrj id type element x y z\n"
            "dump_modify d element O sort id\n")


def make_slab(s: Slab, out: Path) -> dict:
    cell_pos, cell_len = oriented_cell(s.lattice, s.normal)
    reps = np.maximum(1, np.ceil(np.array([s.width, s.width, s.length]) / cell_len)).astype(int)
    pos, box = repeat(cell_pos, cell_len, reps)
    # the held slab: the middle half along z, its faces in the widest gap between molecular layers near
    # a quarter and three quarters of the box (for Ih basal: between two bilayers)
    z = pos[:, 2]
    lo, hi = (face_near(z, frac * box[2], cell_len[2]) for frac in (0.25, 0.75))
    ice = (z >= lo) & (z < hi)
    write_data(out / f"{s.name}.data", pos, box)
    ice_ids = (np.nonzero(ice)[0] + 1).tolist()
    script = HEADER.format(read=f"read_data {s.name}.data", dt=TIMESTEP_FS) + f"""
region slab block INF INF INF INF {lo} {hi}
group ice region slab
group melt subtract all ice
velocity melt create 400 {seed_of(s.name)}
velocity ice set 0 0 0
fix hold ice setforce 0 0 0
fix hot melt nvt temp 400 400 1000
run 3000
unfix hot
fix cool melt nvt temp {s.temperature} {s.temperature} 1000
run 1500
unfix cool
unfix hold
velocity ice create {s.temperature} {seed_of(s.name) + 1}
fix md all npt temp {s.temperature} {s.temperature} 1000 z 1 1 10000
run 1000
{dump_lines(s.name, 200)}
run 800
"""
    wall = run(s.name, script, out)
    return {"name": s.name, "kind": "slab", "lattice": s.lattice, "temperature": s.temperature,
            "normal_axis_of_lattice_cell": s.normal, "n_molecules": len(pos), "box0": box.tolist(),
            "slab": {"lo": float(lo), "hi": float(hi), "lz0": float(box[2])}, "ice_ids": ice_ids,
            "protocol": "melt 30 ps at 400 K (slab held), cool 15 ps, release NPT(z) 10 ps, 5 frames 2 ps apart",
            "wall_s": wall}


def liquid_script(name: str, box: float, temperature: float, seed: int, extra: str = "") -> tuple[str, np.ndarray]:
    """A liquid box: an Ih crystal of about the right size, melted at 400 K, cooled at constant pressure."""
    cell_pos, cell_len = oriented_cell("1h", 2)
    reps = np.maximum(1, np.round(box / cell_len)).astype(int)
    pos, lengths = repeat(cell_pos, cell_len, reps)
    return HEADER.format(read=f"read_data {name}.start.data", dt=TIMESTEP_FS) + f"""
velocity all create 400 {seed}
fix hot all nvt temp 400 400 1000
run 2000
unfix hot
fix cool all npt temp 300 {temperature} 1000 iso 1 1 10000
run 2000
unfix cool
fix eq all npt temp {temperature} {temperature} 1000 iso 1 1 10000
run 2000
unfix eq
{extra}""", (pos, lengths)


def make_liquid(s: Liquid, out: Path) -> dict:
    script, (pos, lengths) = liquid_script(s.name, s.box, s.temperature, 4321)
    write_data(out / f"{s.name}.start.data", pos, lengths)
    script += f"fix md all npt temp {s.temperature} {s.temperature} 1000 iso 1 1 10000\n"
    script += dump_lines(s.name, 500) + "run 2000\n"
    wall = run(s.name, script, out)
    return {"name": s.name, "kind": "liquid", "temperature": s.temperature, "n_molecules": len(pos),
            "protocol": "melt 20 ps at 400 K, cool to T over 20 ps, 20 ps at T, 5 frames 5 ps apart", "wall_s": wall}


def make_seed(s: Seed, out: Path) -> dict:
    liquid_rng, seed_rng = ((1234 + int(s.radius), 4000 + int(s.radius)) if s.sample == 0
                            else (seed_of(s.name), seed_of(s.name + " seed")))
    script, (pos, lengths) = liquid_script(s.name, s.box, s.temperature, liquid_rng)
    write_data(out / f"{s.name}.start.data", pos, lengths)
    # the seed: lattice sites within R of a lattice point near the box centre, in a box of their own
    cell_pos, cell_len = oriented_cell(s.lattice, 2)
    lat, lat_len = repeat(cell_pos, cell_len, np.ceil((2 * s.radius + 10) / cell_len).astype(int))
    centre = lat[np.argmin(np.linalg.norm(lat - lat_len / 2, axis=1))]
    seed = lat[np.linalg.norm(lat - centre, axis=1) <= s.radius] - centre
    # LAMMPS places the seed at the centre of the equilibrated liquid's box
    seed_file = out / f"{s.name}.seed.txt"
    seed_file.write_text("".join(f"create_atoms 1 single $(v_cx{x:+.6f}) $(v_cy{y:+.6f}) $(v_cz{z:+.6f}) units box "
                                 "remap yes\n" for x, y, z in seed))
    script += f"""
variable cx equal 0.5*(xlo+xhi)
variable cy equal 0.5*(ylo+yhi)
variable cz equal 0.5*(zlo+zhi)
group liquid type 1
include {seed_file.name}
group seed subtract all liquid
delete_atoms overlap 2.5 liquid seed
reset_atoms id
velocity seed set 0 0 0
fix hold seed setforce 0 0 0
fix relax liquid nvt temp {s.temperature} {s.temperature} 1000
run 500
unfix relax
unfix hold
velocity seed create {s.temperature} {seed_rng}
fix md all npt temp {s.temperature} {s.temperature} 1000 iso 1 1 10000
run 200
{dump_lines(s.name, 200)}
run 400
write_dump seed custom {s.name}.seed_ids id modify sort id
"""
    wall = run(s.name, script, out)
    wall += write_inherent_structures(s.name, out)
    ids = [int(w) for line in (out / f"{s.name}.seed_ids").read_text().splitlines()[9:] for w in line.split()[:1]]
    return {"name": s.name, "kind": "seed", "lattice": s.lattice, "temperature": s.temperature, "radius": s.radius,
            "seed_molecules": len(seed), "seed_ids": ids,
            "protocol": "liquid melted at 400 K, cooled to T, 20 ps at T; seed inserted, liquid within 2.5 A "
                        "removed, 5 ps with the seed held, released (NPT); frames 3 and 5 ps after release",
            "wall_s": wall}


def write_inherent_structures(name: str, out: Path) -> float:
    """OUT/NAME.inherent.lammpstrj: every frame of OUT/NAME.lammpstrj with its energy minimised (conjugate
    gradients to a force norm of 1e-6 kcal/mol/A, the box as in the frame). Returns LAMMPS's wall time."""
    steps = [f.timestep for f in read_frames(out / f"{name}.lammpstrj")]
    target = out / f"{name}.inherent.lammpstrj"
    target.unlink(missing_ok=True)
    script = f"""units real
atom_style atomic
boundary p p p
read_data {name}.start.data
mass 1 {MW_MASS}
pair_style sw
pair_coeff * * mW.sw O
min_style cg
"""
    for step in steps:
        # the minimiser advances the step count: set it back so that each minimised frame has its MD step
        script += (f"read_dump {name}.lammpstrj {step} x y z box yes purge yes replace no add keep\n"
                   "minimize 0 1e-6 5000 50000\n"
                   f"reset_timestep {step}\n"
                   f"write_dump all custom {target.name} id type element x y z modify element O sort id append yes\n")
    return run(f"{name}.inherent", script, out)


def make_surface(s: Surface, out: Path) -> dict:
    cell_pos, cell_len = oriented_cell("1h", s.normal)
    reps = np.maximum(1, np.ceil(np.array([s.width, s.width, s.thickness]) / cell_len)).astype(int)
    pos, box = repeat(cell_pos, cell_len, reps)
    box = box + np.array([0.0, 0.0, s.vacuum])
    pos = pos + np.array([0.0, 0.0, 0.5 * s.vacuum])  # the slab in the middle, vacuum across z = 0
    write_data(out / f"{s.name}.data", pos, box)
    script = HEADER.format(read=f"read_data {s.name}.data", dt=TIMESTEP_FS) + f"""
velocity all create {s.temperature} {seed_of(s.name)}
fix md all nvt temp {s.temperature} {s.temperature} 1000
run 2000
{dump_lines(s.name, 200)}
run 800
"""
    wall = run(s.name, script, out)
    face = {2: "basal", 0: "prismatic"}[s.normal]
    return {"name": s.name, "kind": "surface", "lattice": "1h", "temperature": s.temperature, "face": face,
            "normal_axis_of_lattice_cell": s.normal, "n_molecules": len(pos), "box0": box.tolist(),
            "protocol": f"ice Ih slab, {face} faces to vacuum; NVT 20 ps, then 5 frames 2 ps apart", "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "interfaces")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--inherent-structures", action="store_true",
                    help="only write the seeds' inherent structures (NAME.inherent.lammpstrj) from their existing MD")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(s.name for s in SYSTEMS))
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for s in SYSTEMS + [h for h in HYDRATE_SEEDS if args.only and h.name in args.only]:
        if args.only and s.name not in args.only:
            continue
        if args.inherent_structures:
            if isinstance(s, Seed) and (out / f"{s.name}.lammpstrj").exists():
                print(f"[{s.name}] inherent structures in {write_inherent_structures(s.name, out):.0f} s", flush=True)
            continue
        print(f"[{s.name}] ...", flush=True)
        maker = {Slab: make_slab, Seed: make_seed, Liquid: make_liquid, Surface: make_surface}[type(s)]
        info = maker(s, out)
        info["model"] = f"mW (pair_style sw), Tm = {MW_TM} K, timestep {TIMESTEP_FS} fs"
        (out / f"{s.name}.json").write_text(json.dumps(info))
        print(f"[{s.name}] done in {info['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
