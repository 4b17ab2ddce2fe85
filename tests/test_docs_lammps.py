"""The LAMMPS input lines and the mpirun line that the docs show run as written.

tests/test_docs.py runs the docs' `icephase` commands; this file runs the rest of what a reader copies:
- every block that starts with `plugin load` (README.md, docs/compute_icephase.md): each of its `compute`
  lines in turn, with the block's other lines, on a small ice Ih box (`run 0`). Lines that print a compute
  (thermo_style, dump) go with the compute whose ID they name; a compute line whose ID no output line names
  gets `thermo_style custom step c_ID[1]` so that it is evaluated. The block is run in a folder where its
  relative paths (build/, models/, my_model.pth) exist, with a group `water` (the oxygen type);
- the mpirun line of docs/parallel.md, from a copy of examples/lammps_inputs, shortened with `-var nrun`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, SHIPPED_MODEL
from test_plugin import LMP, MPIRUN, PLUGIN, ice_system, lammps_env, write_data

pytestmark = pytest.mark.skipif(not PLUGIN.is_file(), reason=f"{PLUGIN} is not built: run scripts/install.sh")

DOCS = [REPO / "README.md", REPO / "docs" / "compute_icephase.md"]


def plugin_blocks() -> list[tuple[str, int, list[str]]]:
    """(doc, line number, lines) of every fenced block whose first line is `plugin load ...`."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        inside, start, block = False, 0, []
        for number, line in enumerate(lines, start=1):
            if line.strip().startswith("```"):
                if inside and block and block[0].startswith("plugin load"):
                    found.append((doc.name, start, block))
                inside, start, block = not inside, number + 1, []
                continue
            command = line.split("#", 1)[0].strip()
            if inside and command:
                block.append(command)
    return found


BLOCKS = plugin_blocks()
CASES = [
    (doc, start, block, line) for doc, start, block in BLOCKS for line in block if line.startswith("compute ")
]


def test_the_docs_show_plugin_blocks():
    assert {doc for doc, _, _ in BLOCKS} == {"README.md", "compute_icephase.md"}
    assert len(CASES) >= 5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("doc_lammps")
    (work / "build").symlink_to(REPO / "build")
    (work / "models").symlink_to(REPO / "models")
    shutil.copy(SHIPPED_MODEL, work / "my_model.pth")
    write_data(work / "ice.data", ice_system("Ih", 30.0, 0.1, seed=5))
    return work


def script_for(block: list[str], compute: str) -> tuple[str, str]:
    """The input for one compute line of a block, and the compute's ID."""
    cid = compute.split()[1]
    outputs = [line for line in block if line.split()[0] in ("thermo_style", "dump")]
    setup = [line for line in block if not line.startswith("compute ") and line not in outputs]
    mine = [line for line in outputs if f"c_{cid}[" in line]
    if not any(line.startswith("thermo_style") for line in mine):
        mine.insert(0, f"thermo_style custom step c_{cid}[1]")
    script = ["units real", "atom_style atomic", "read_data ice.data", "pair_style zero 10.0", "pair_coeff * *",
              "group water type 1", *setup, compute, *mine, "run 0", ""]
    return "\n".join(script), cid


@pytest.mark.parametrize("doc,start,block,compute", CASES,
                         ids=[f"{d}:{s}:{c.split(' icephase ')[1][:40]}" for d, s, _, c in CASES])
def test_doc_block_runs(doc, start, block, compute, workdir, tmp_path):
    script, cid = script_for(block, compute)
    for name in ("build", "models", "my_model.pth", "ice.data"):
        (tmp_path / name).symlink_to(workdir / name)
    (tmp_path / "in.lmp").write_text(script)
    proc = subprocess.run([str(LMP), "-in", "in.lmp", "-log", "log.lammps"], cwd=tmp_path, env=lammps_env(),
                          capture_output=True, text=True, timeout=300)
    log = (tmp_path / "log.lammps").read_text() if (tmp_path / "log.lammps").is_file() else ""
    if "device cuda" in compute and not torch.cuda.is_available():
        # the documented line is for a GPU machine; here it must stop with the clear message
        assert proc.returncode != 0
        assert "device cuda requested, but libtorch finds no usable CUDA device" in log + proc.stdout + proc.stderr
        return
    assert proc.returncode == 0, f"{doc}:{start}: {compute}\n{(log or proc.stdout + proc.stderr)[-3000:]}"
    assert "classifier: metric" in log  # the compute logged its settings at init
    # the ice Ih box is labelled Ih (code 1) wherever the block dumps the labels
    for line in block:
        words = line.split()
        if words[0] == "dump" and f"c_{cid}[1]" in words:
            codes = dumped_column(tmp_path / words[5], f"c_{cid}[1]")
            assert len(codes) and (codes.astype(float).astype(int) == 1).mean() > 0.99


def dumped_column(path: Path, name: str) -> np.ndarray:
    """One column of a `dump custom` file, all frames (parsed from the ITEM: ATOMS header)."""
    values, col = [], None
    for line in path.read_text().splitlines():
        if line.startswith("ITEM: ATOMS"):
            col = line.split()[2:].index(name)
        elif line.startswith("ITEM:"):
            col = None
        elif col is not None:
            values.append(line.split()[col])
    return np.asarray(values)


def test_parallel_doc_mpirun_line(tmp_path):
    text = (REPO / "docs" / "parallel.md").read_text()
    line = next(l.strip() for l in text.splitlines() if l.strip().startswith("mpirun "))
    args = shlex.split(line)
    assert args[:3] == ["mpirun", "-np", "4"]
    examples = tmp_path / "examples" / "lammps_inputs"
    shutil.copytree(REPO / "examples" / "lammps_inputs", examples)
    (tmp_path / "build").symlink_to(REPO / "build")
    (tmp_path / "models").symlink_to(REPO / "models")
    from icephase_lmp.cli import main

    assert main(["lammps-data", "Ih", "--reps", "4,4,3", "--out", str(examples / "ice_ih.data"),
                 "--settings", str(examples / "tip4p_ice.settings")]) == 0
    env = lammps_env()
    env["PATH"] = os.pathsep.join([str(LMP.parent), env["PATH"]])  # as after `source .venv/bin/activate`
    cmd = [str(MPIRUN), *args[1:], "-var", "nrun", "20", "-var", "ndump", "10", "-screen", "none"]
    proc = subprocess.run(cmd, cwd=examples, env=env, capture_output=True, text=True, timeout=600)
    log = (examples / "log.lammps").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "with 4 MPI tasks" in log
    from icephase_lmp.trajectory import read_frames

    frames = list(read_frames(examples / "ice_ih_labels.lammpstrj"))
    assert len(frames) == 3
    codes = np.concatenate([f.columns["c_phase[1]"].astype(float).astype(int) for f in frames])
    assert (codes == 1).mean() > 0.99
