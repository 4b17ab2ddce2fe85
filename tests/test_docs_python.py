"""Every ```python example in README.md and docs/*.md runs as written, so the Python API's docs cannot rot.

Each block runs on its own (a fresh namespace) in a scratch folder holding the files the examples name:
`traj.extxyz` (two frames of noisy ice Ih), `labels.lammpstrj` (a dump with a `code` column, as `icephase
classify` writes one) and `md.tpr` / `md.xtc` (links to the GCIceNet ice Ih run in ../shared).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from conftest import GCICENET, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks() -> list[tuple[str, int, str]]:
    found = []
    for doc in DOCS:
        block: list[str] | None = None
        start = 0
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            stripped = line.strip()
            if block is None and stripped == "```python":
                block, start = [], number + 1
            elif block is not None and stripped.startswith("```"):
                found.append((doc.name, start, "\n".join(block) + "\n"))
                block = None
            elif block is not None:
                block.append(line)
    return found


BLOCKS = python_blocks()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, references):
    from ase import Atoms
    from ase.io import write

    from icephase_lmp.references import supercell

    work = tmp_path_factory.mktemp("docs_python")
    ih = supercell(references[0].atoms, 20.0)
    rng = np.random.default_rng(8)
    frames = [Atoms("O" * len(ih), positions=ih.positions + rng.normal(0, 0.15, ih.positions.shape),
                    cell=ih.cell.array, pbc=True) for _ in range(2)]
    write(work / "traj.extxyz", frames)
    cell = np.diag(ih.cell.array)
    codes = rng.integers(0, 8, len(ih))
    with (work / "labels.lammpstrj").open("w") as fh:
        fh.write(f"ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n{len(ih)}\nITEM: BOX BOUNDS pp pp pp\n")
        fh.write("".join(f"0 {c}\n" for c in cell) + "ITEM: ATOMS id element x y z code\n")
        fh.write("".join(f"{i + 1} O {x:.4f} {y:.4f} {z:.4f} {c}\n"
                         for i, ((x, y, z), c) in enumerate(zip(ih.positions % cell, codes))))
    (work / "md.xtc").symlink_to(GCICENET / "md_1h_10frame.xtc")
    (work / "md.tpr").symlink_to(GCICENET / "md_1h.tpr")
    return work


def test_the_docs_show_python_examples():
    assert {doc for doc, _, _ in BLOCKS} >= {"README.md", "python_api.md"}
    text = "".join(code for _, _, code in BLOCKS)
    assert "icephase_lmp.classify(" in text and "IcePhase(" in text and "IcePhaseModifier(" in text


@pytest.mark.parametrize("doc, line, code", BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_doc_python_example_runs(workdir, monkeypatch, doc, line, code):
    monkeypatch.chdir(workdir)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"{doc}:{line}", "exec"), {"__name__": "__doc_example__"})
