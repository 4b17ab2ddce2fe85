"""The LAMMPS examples run as written (shortened with -var / --steps) and label ice Ih as Ih."""

import json
import os
import subprocess
import sys

from conftest import REPO
from icephase_lmp.cli import main
from icephase_lmp.trajectory import read_frames

VENV_BIN = os.path.dirname(sys.executable)
EXAMPLES = REPO / "examples" / "lammps_inputs"


def test_ice_ih_with_compute(tmp_path):
    assert main(["lammps-data", "Ih", "--reps", "4,4,3", "--out", str(tmp_path / "ice_ih.data"),
                 "--settings", str(tmp_path / "tip4p_ice.settings")]) == 0
    cmd = [os.path.join(VENV_BIN, "lmp"), "-in", str(EXAMPLES / "in.ice_ih_icephase"), "-var", "nrun", "200",
           "-var", "ndump", "100", "-var", "plugin", str(REPO / "build" / "icephaseplugin.so"),
           "-var", "model", str(REPO / "models" / "icephase-7phase.pth"), "-screen", "none", "-log", "log.lammps"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (tmp_path / "log.lammps").read_text()[-2000:]
    frames = list(read_frames(tmp_path / "ice_ih_labels.lammpstrj"))
    assert len(frames) == 3 and frames[0].n_atoms == 768
    for f in frames:
        codes = f.columns["c_phase[1]"].astype(float).astype(int)
        assert (codes == 1).mean() > 0.99  # ice Ih at 250 K is labelled Ih


def test_python_driven_run_reads_labels_as_numpy():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "python_driven.py"), "--steps", "20"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "768 oxygens analysed, 1536 H not analysed" in proc.stdout
    counts_line = next(line for line in proc.stdout.splitlines() if line.startswith("global counts vector"))
    counts = json.loads(counts_line.split(":", 1)[1])  # a list of ints printed by the example
    assert sum(counts) == 768 and counts[1] > 760
