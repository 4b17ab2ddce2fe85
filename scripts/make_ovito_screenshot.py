"""docs/figures/ovito_labels.png: the demo's dump opened with OVITO's own LAMMPS reader and the
`icephase ovito-script` modifier applied, i.e. what the OVITO desktop application shows.

Usage: python scripts/make_ovito_screenshot.py [--dump demo_output/labels.lammpstrj]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icephase_lmp.cli import main as icephase
from icephase_lmp.render import render_dump_with_ovito

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", type=Path, default=REPO / "demo_output" / "labels.lammpstrj")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "ovito_labels.png")
    args = ap.parse_args()
    if not args.dump.is_file():
        raise SystemExit(f"{args.dump} does not exist: run `bash scripts/demo.sh` first")
    modifier = args.out.with_name("icephase_phases_ovito.py")
    icephase(["ovito-script", "--out", str(modifier)])
    print(f"wrote {render_dump_with_ovito(args.dump, modifier, args.out)}")
