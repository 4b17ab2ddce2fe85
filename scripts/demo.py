"""The README's demo: ice Ih in contact with liquid water in LAMMPS (TIP4P/Ice), labelled on the fly by
`compute icephase` with the shipped model; then a picture of the last frame coloured by phase and a plot
of the phase fractions against time.

Usage: python scripts/demo.py [--out demo_output] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from icephase_lmp.full_atom_ice import basal_interfaces, build_tip4p_ice
from icephase_lmp.lammps_data import write_tip4p_ice_data
from icephase_lmp.tip4p_ice import write_tip4p_ice_settings
from icephase_lmp.model_file import SHIPPED_MODEL, read_metadata
from icephase_lmp.phases import code_table
from icephase_lmp.render import plot_phase_fractions, render_phases
from icephase_lmp.trajectory import read_frames

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "build" / "icephaseplugin.so"
INPUT = REPO / "examples" / "lammps_inputs" / "in.coexistence_icephase"


def run_lammps(out: Path, variables: dict[str, str], total_steps: int) -> None:
    lmp = Path(sys.executable).with_name("lmp")
    cmd = [str(lmp), "-in", str(INPUT), "-log", "log.lammps", "-screen", "none", "-nocite"]
    for key, value in variables.items():
        cmd += ["-var", key, value]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.time()
    with open(out / "lammps.stdout", "w") as stdout:
        proc = subprocess.Popen(cmd, cwd=out, stdout=stdout, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(5)
            step = last_step(out / "log.lammps")
            print(f"\r  LAMMPS step {step:6d} / {total_steps}  ({time.time() - start:4.0f} s)", end="", flush=True)
    print()
    if proc.returncode != 0:
        tail = (out / "log.lammps").read_text(errors="replace").splitlines()[-12:]
        raise SystemExit(f"LAMMPS failed (exit {proc.returncode}); last lines of {out / 'log.lammps'}:\n" + "\n".join(tail))


def last_step(log: Path) -> int:
    if not log.exists():
        return 0
    for line in reversed(log.read_text(errors="replace").splitlines()[-30:]):
        words = line.split()
        # a thermo line: every column a number (the step first)
        if len(words) >= 4 and words[0].isdigit() and all(_is_number(w) for w in words):
            return int(words[0])
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "demo_output")
    ap.add_argument("--quick", action="store_true", help="a few hundred steps only (for the tests)")
    args = ap.parse_args()
    if not PLUGIN.is_file():
        raise SystemExit(f"{PLUGIN} is missing: build it with `bash scripts/install.sh`")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(SHIPPED_MODEL)
    names = [p["name"] for p in meta["phases"] if p["code"] > 0]

    print("1. ice Ih slab (basal planes facing z), TIP4P/Ice, from GenIce2")
    info = write_tip4p_ice_data(out / "ice_slab.data", build_tip4p_ice("Ih", reps=(3, 6, 3), axis_order="xzy", seed=1))
    write_tip4p_ice_settings(out / "tip4p_ice.settings")
    lz = info.lengths[2]
    z1, z2, dz = basal_interfaces(info.oxygen_positions[:, 2], lz)
    print(f"   {info.n_molecules} molecules, box {' x '.join(f'{x:.1f}' for x in info.lengths)} A; "
          f"ice kept for {z1:.1f} <= z < {z2:.1f} A, the rest is melted")

    steps = {"nmelt": 3000, "nquench": 1000, "nrun": 3000, "ndump": 500}
    if args.quick:
        steps = {"nmelt": 200, "nquench": 100, "nrun": 200, "ndump": 100}
    variables = {"data": "ice_slab.data", "settings": "tip4p_ice.settings", "plugin": str(PLUGIN),
                 "model": str(SHIPPED_MODEL), "ghost": f"{meta['ghost_cutoff']:.2f}", "dz": f"{dz:.6f}",
                 "zice_lo": f"{z1:.6f}", "zice_hi": f"{z2:.6f}", **{k: str(v) for k, v in steps.items()}}
    total = steps["nmelt"] + steps["nquench"] + steps["nrun"]
    print(f"2. LAMMPS: melt half at 500 K, quench, then {steps['nrun']} steps at 250 K with compute icephase "
          f"every {steps['ndump']} steps")
    run_lammps(out, variables, total)

    print("3. labels from the dump")
    table = code_table(names)
    frames = list(read_frames(out / "labels.lammpstrj"))
    codes = [f.columns["c_phase[1]"].astype(float).astype(int) for f in frames]
    times_ps = [(f.timestep - frames[0].timestep) * 2.0 / 1000 for f in frames]
    last, last_codes = frames[-1], codes[-1]
    z = (last.positions[:, 2] - last.origin[2]) % last.cell[2, 2]
    inside = (z >= z1) & (z < z2)
    depth = np.minimum(z - z1, z2 - z)
    print(f"   {len(frames)} labelled frames; last frame (t = {times_ps[-1]:.1f} ps into the labelled run):")
    for region, mask in (("ice half", inside & (depth > 4.0)), ("liquid half", ~inside & (depth < -4.0))):
        present = {int(c): np.count_nonzero(last_codes[mask] == c) / max(mask.sum(), 1) for c in np.unique(last_codes[mask])}
        print(f"   {region:12s} (more than 4 A from the initial interfaces): " +
              ", ".join(f"{table[c]} {100 * v:.1f}%" for c, v in sorted(present.items(), key=lambda kv: -kv[1])))
    bins = np.arange(0.0, 10.0, 2.0)
    profile = [np.mean(last_codes[inside & (depth >= a) & (depth < a + 2.0)] > 0) for a in bins]
    print("   ice-labelled fraction of the ice half by depth below the initial interfaces: " +
          ", ".join(f"{a:.0f}-{a + 2:.0f} A {100 * f:.0f}%" for a, f in zip(bins, profile)))
    png = render_phases(last.positions, last.cell, last_codes, names, out / "last_frame.png", origin=last.origin,
                        title=f"compute icephase, t = {times_ps[-1]:.1f} ps")
    plot = plot_phase_fractions(times_ps, codes, names, out / "phase_fractions.png",
                                xlabel="time in the labelled run (ps)")
    print(f"\nOutputs in {out}:\n  {png.name}  (last frame coloured by phase)\n  {plot.name}  (phase fractions)\n"
          f"  labels.lammpstrj  (open in OVITO: column c_phase[1] = phase code)\n  log.lammps  (thermo: counts per phase)")


if __name__ == "__main__":
    main()
