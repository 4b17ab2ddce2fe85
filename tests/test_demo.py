"""The README's demo, in its quick form: LAMMPS + compute icephase + pictures, end to end."""

import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ice half" in proc.stdout and "liquid half" in proc.stdout
    for name in ("last_frame.png", "phase_fractions.png"):
        img = np.asarray(Image.open(out / name).convert("RGB"))
        assert img.shape[0] >= 300 and len({tuple(c) for c in img.reshape(-1, 3)}) > 20, name
    # the labelled dump has a code per oxygen and the thermo has the counts
    text = (out / "labels.lammpstrj").read_text()
    assert "c_phase[1]" in text
    assert "c_phase[2]" in (out / "log.lammps").read_text()
