"""Write ice_oxygen.data for in.ice_oxygen: the oxygen sites of ice Ih with Gaussian noise, plus a slab of
the same oxygens randomly displaced far more (a disordered, liquid-like layer, with no two oxygens closer
than 2.4 A, as in water).

    .venv/bin/python examples/lammps_inputs/make_ice_oxygen_data.py [--out ice_oxygen.data] [--sigma 0.15]
        [--phase Ih]

LAMMPS data file: units real, atom_style atomic, one atom type (O, mass 15.9994). GenIce2's Ih cell is
orthorhombic, so the box is orthogonal; --phase takes another built-in phase whose cell is orthogonal too
(Ic, VI, VII, sI, sII, sH among them; benchmarks/lammps_overhead.py --compare-phase uses it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from icephase_lmp.references import builtin_reference, supercell


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).with_name("ice_oxygen.data")))
    p.add_argument("--width", type=float, default=28.0, help="smallest box width, A (default %(default)s)")
    p.add_argument("--sigma", type=float, default=0.15, help="thermal noise of the crystal, A")
    p.add_argument("--melt-sigma", type=float, default=0.8, help="noise of the disordered slab, A")
    p.add_argument("--min-distance", type=float, default=2.4,
                   help="no slab oxygen closer than this to another one, A (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phase", default="Ih", help="a built-in phase with an orthogonal cell (default %(default)s)")
    args = p.parse_args()

    atoms = supercell(builtin_reference(args.phase).atoms, args.width)
    if not np.allclose(atoms.cell.array, np.diag(np.diag(atoms.cell.array))):
        raise SystemExit(f"--phase {args.phase}: its cell is not orthogonal; choose Ih, Ic, VI, VII, sI, sII or sH")
    rng = np.random.default_rng(args.seed)
    cell = np.diag(atoms.cell.array)
    pos = atoms.positions + rng.normal(0.0, args.sigma, atoms.positions.shape)
    slab = atoms.positions[:, 2] > 0.6 * cell[2]  # the top 40% along z: strongly disordered
    pos %= cell
    # Random displacements put some oxygens closer together than water ever has them, and the compute
    # labels such oxygens apart (docs/compute_icephase.md): displace the slab oxygens one at a time, each
    # drawn again until it is at least --min-distance from every other oxygen. The ones not yet displaced
    # wait on their lattice sites, so that a draw only has to avoid the oxygens already placed and lattice
    # sites (2.75 A apart); the box is orthogonal, so rounding gives the nearest image.
    for k in np.flatnonzero(slab):
        pos[k] = (atoms.positions[k] + rng.normal(0.0, args.melt_sigma, 3)) % cell
        for _ in range(1000):
            d = pos - pos[k]
            d -= cell * np.round(d / cell)
            d2 = np.einsum("ij,ij->i", d, d)
            d2[k] = np.inf
            if d2.min() >= args.min_distance**2:
                break
            pos[k] = (atoms.positions[k] + rng.normal(0.0, args.melt_sigma, 3)) % cell
        else:
            raise SystemExit(f"could not place oxygen {k + 1} at least {args.min_distance} A from the others")
    lines = [f"ice {args.phase} oxygens with a disordered slab (icephase example), sigma {args.sigma} A", "",
             f"{len(pos)} atoms", "1 atom types", ""]
    lines += [f"0.0 {cell[k]:.8f} {a}lo {a}hi" for k, a in enumerate("xyz")]
    lines += ["", "Masses", "", "1 15.9994", "", "Atoms # atomic", ""]
    lines += [f"{i + 1} 1 {x:.8f} {y:.8f} {z:.8f}" for i, (x, y, z) in enumerate(pos)]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(pos)} O, box {cell.round(3)} A, {slab.sum()} O in the disordered slab")


if __name__ == "__main__":
    main()
