"""Every `icephase` command shown in README.md and docs/*.md runs, so the docs cannot rot.

Commands are taken from ```bash blocks and run in a scratch folder that holds the example files the docs
name (made here from the shipped references, or linked to ../shared). Two substitutions keep it fast, and
are the only ones: `../shared/` points at the real shared folder, and `icephase train` runs 4 steps (its
`--steps` value replaced, or `--steps 4` added), not 20000.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import GCICENET, REPO, SHARED, liquid_like
from icephase_lmp.cli import main

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
STEPS = re.compile(r"--steps \d+")


def doc_commands() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        in_bash = False
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            if line.strip().startswith("```"):
                in_bash = line.strip() == "```bash" and not in_bash
                continue
            command = line.split("#", 1)[0].strip()
            if in_bash and command.startswith("icephase "):
                found.append((doc.name, number, command))
    return found


def write_dump(path: Path, positions: np.ndarray, cell: np.ndarray, frames: int = 2) -> None:
    """A LAMMPS `dump custom` of oxygens (orthogonal box), written independently of our writer."""
    with path.open("w") as fh:
        for step in range(frames):
            fh.write(f"ITEM: TIMESTEP\n{step * 100}\nITEM: NUMBER OF ATOMS\n{len(positions)}\n")
            fh.write("ITEM: BOX BOUNDS pp pp pp\n" + "".join(f"0 {cell[i, i]}\n" for i in range(3)))
            fh.write("ITEM: ATOMS id type element x y z\n")
            for i, (x, y, z) in enumerate(positions, start=1):
                fh.write(f"{i} 1 O {x:.5f} {y:.5f} {z:.5f}\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, references):
    from ase import Atoms
    from ase.io import write

    from icephase_lmp.references import supercell

    work = tmp_path_factory.mktemp("docs")
    rng = np.random.default_rng(3)
    ih = supercell(references[0].atoms, 24.0)
    # orthogonal box: Ih's GenIce2 cell is orthorhombic
    noisy = ih.positions + rng.normal(0, 0.15, ih.positions.shape)
    cell = ih.cell.array
    write_dump(work / "traj.lammpstrj", noisy % np.diag(cell), cell)
    write_dump(work / "my_ice.lammpstrj", noisy % np.diag(cell), cell)
    water, box = liquid_like(400, 1.0, rng)
    write_dump(work / "my_water.lammpstrj", water, box)
    write(work / "traj.extxyz", Atoms("O" * len(noisy), positions=noisy, cell=cell, pbc=True))
    # what `icephase plot labels.csv` reads, whether or not a classify command ran before it
    (work / "labels.csv").write_text("frame,index,code,phase,distance,cluster\n" + "".join(
        f"{f},{k},{int(k < 3)},x,1.0,{int(k < 3)}\n" for f in range(2) for k in range(5)))
    (work / "md.xtc").symlink_to(GCICENET / "md_1h_10frame.xtc")
    (work / "md.tpr").symlink_to(GCICENET / "md_1h.tpr")
    return work


COMMANDS = doc_commands()


def test_the_docs_show_commands():
    # guards against the extraction silently finding nothing
    assert len(COMMANDS) >= 10
    assert {doc for doc, _, _ in COMMANDS} >= {"README.md", "offline.md", "training.md"}


@pytest.mark.parametrize("doc, line, command", COMMANDS, ids=[f"{d}:{n}" for d, n, _ in COMMANDS])
def test_doc_command_runs(workdir, monkeypatch, doc, line, command):
    monkeypatch.chdir(workdir)
    text = command.replace("../shared/", f"{SHARED}/")
    text = STEPS.sub("--steps 4", text)
    if text.startswith("icephase train") and "--steps" not in text:
        text += " --steps 4"
    argv = shlex.split(text)[1:]
    assert main(argv) == 0, f"{doc}:{line}: `{command}` failed"
