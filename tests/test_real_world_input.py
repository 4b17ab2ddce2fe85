"""The offline path on real-world input (issue 11): one test per problem a new user met, each asserting the
exit code and the message. The inputs are written here by hand (LAMMPS dumps of a noisy ice Ih crystal);
the expected labels come from the same crystal in its plain, wrapped form, never from the code under test on
the damaged input.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import GCICENET, SHIPPED_MODEL, liquid_like
from icephase_lmp.cli import main
from icephase_lmp.denoise import MAX_STEP
from icephase_lmp.errors import DenoiseError
from icephase_lmp.denoiser_network import CUDA_UNAVAILABLE
from icephase_lmp.model_file import load_model, read_metadata, save_model
from icephase_lmp.phases import MIN_OXYGEN_DISTANCE, TOO_CLOSE_DISTANCE
from icephase_lmp.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
IH = 1  # the shipped model's code of ice Ih


# ---- inputs ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ice():
    """288 oxygens of ice Ih with 0.1 A noise in an orthogonal box (positions inside it), and its cell."""
    from icephase_lmp.references import builtin_reference, supercell

    atoms = supercell(builtin_reference("Ih").atoms, 18.0)
    rng = np.random.default_rng(0)
    pos = atoms.positions + rng.normal(0.0, 0.1, atoms.positions.shape)
    cell = atoms.cell.array
    frac = (pos @ np.linalg.inv(cell)) % 1.0
    assert np.allclose(cell, np.diag(np.diag(cell)))
    return frac @ cell, cell


def dump_text(pos: np.ndarray, cell: np.ndarray, columns: str = "x y z", timestep: int = 0) -> str:
    """One LAMMPS dump frame; a cell with a tilt (rows a, b, c, LAMMPS form) is written as LAMMPS does."""
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    if xy or xz or yz:
        box = [
            "ITEM: BOX BOUNDS xy xz yz pp pp pp",
            f"{min(0.0, xy, xz, xy + xz)} {lx + max(0.0, xy, xz, xy + xz)} {xy}",
            f"{min(0.0, yz)} {ly + max(0.0, yz)} {xz}",
            f"0 {lz} {yz}",
        ]
    else:
        box = ["ITEM: BOX BOUNDS pp pp pp", f"0 {lx}", f"0 {ly}", f"0 {lz}"]
    lines = ["ITEM: TIMESTEP", str(timestep), "ITEM: NUMBER OF ATOMS", str(len(pos)), *box,
             f"ITEM: ATOMS id type {columns}"]
    lines += [f"{i + 1} 1 {x:.8f} {y:.8f} {z:.8f}" for i, (x, y, z) in enumerate(pos)]
    return "\n".join(lines) + "\n"


def read_csv(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """frame -> (codes, distances), in atom order."""
    frames: dict[int, list] = {}
    for row in csv.DictReader(path.open()):
        frames.setdefault(int(row["frame"]), []).append((int(row["code"]), float(row["distance"])))
    return {f: (np.array([c for c, _ in rows]), np.array([d for _, d in rows])) for f, rows in frames.items()}


def classify(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(["classify", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---- unwrapped coordinates, strongly tilted cell ---------------------------------------------------------
def test_unwrapped_dump_and_a_cell_tilted_by_a_box_length_give_the_wrapped_labels(ice, tmp_path, capsys):
    """Three frames of one crystal: wrapped `x y z`; unwrapped `xu yu zu` with atoms up to 3 boxes away;
    and the same lattice described by a triclinic cell with tilt xy equal to the box length."""
    pos, cell = ice
    rng = np.random.default_rng(1)
    unwrapped = pos + rng.integers(-3, 4, pos.shape) @ cell
    tilted = cell.copy()
    tilted[1, 0] = cell[0, 0]  # b' = b + a: the same lattice
    text = dump_text(pos, cell) + dump_text(unwrapped, cell, "xu yu zu", 1) + dump_text(pos, tilted, "x y z", 2)
    dump = tmp_path / "ice.lammpstrj"
    dump.write_text(text)
    out = tmp_path / "labels.csv"
    rc, stdout, err = classify([str(dump), "--out", str(out)], capsys)
    assert rc == 0, err
    assert f"labels written to {out}" in stdout
    frames = read_csv(out)
    codes, dist = frames[0]
    assert (codes == IH).mean() > 0.95  # the wrapped crystal is ice Ih
    for f in (1, 2):
        assert np.array_equal(frames[f][0], codes), f"frame {f}: {(frames[f][0] != codes).sum()} labels differ"
        np.testing.assert_allclose(frames[f][1], dist, rtol=1e-3, atol=1e-3)


# ---- two oxygens on one spot -------------------------------------------------------------------------------
def test_two_oxygens_at_the_same_position_are_reported_and_labelled_liquid(ice, tmp_path, capsys):
    pos, cell = ice
    doubled = np.vstack([pos, pos[:1]])  # atom 289 sits on atom 1
    dump = tmp_path / "doubled.lammpstrj"
    dump.write_text(dump_text(doubled, cell))
    out, den = tmp_path / "labels.csv", tmp_path / "denoised.extxyz"
    rc, _, err = classify([str(dump), "--out", str(out), "--write-denoised", str(den), "--quiet"], capsys)
    assert rc == 0, err
    assert f"warning: frame 0: 2 oxygens are closer than {MIN_OXYGEN_DISTANCE:g} A to another one" in err
    codes, dist = read_csv(out)[0]
    assert codes[0] == codes[288] == 0 and dist[0] == dist[288] == TOO_CLOSE_DISTANCE
    others = np.ones(len(codes), dtype=bool)
    others[[0, 288]] = False
    # the rest of the crystal stays ice Ih (the pair's neighbours see a vacancy; before: 61% liquid)
    assert (codes[others] == IH).mean() > 0.9
    # and no atom is thrown away: every denoised position is within 1 A of its input (minimum image)
    from ase.io import read

    moved = read(den).positions - doubled
    frac = moved @ np.linalg.inv(cell)
    moved = (frac - np.round(frac)) @ cell
    assert np.linalg.norm(moved, axis=1).max() < 1.0


# ---- damaged and runaway models ----------------------------------------------------------------------------
def damage(model: Path, out: Path) -> Path:
    """A copy of ``model`` with 64 bytes of its largest weight tensor overwritten (zip CRCs left as they were)."""
    shutil.copy(model, out)
    with zipfile.ZipFile(out) as zf:
        # a frozen denoiser keeps its weights as graph constants, a scripted one as data
        info = max((i for i in zf.infolist() if "/data/" in i.filename or "/constants/" in i.filename),
                   key=lambda i: i.file_size)
    with out.open("r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
        start = info.header_offset + 30 + int(name_len) + int(extra_len) + info.file_size // 2
        f.seek(start)
        f.write(b"\x7f" * 64)
    return out


def test_damaged_model_is_named_by_inspect_and_classify(ice, tmp_path, capsys):
    bad = damage(SHIPPED_MODEL, tmp_path / "damaged.pth")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} is damaged" in err and "does not match its stored checksum" in err
    dump = tmp_path / "ice.lammpstrj"
    dump.write_text(dump_text(*ice))
    rc, _, err = classify([str(dump), "--model", str(bad), "--out", str(tmp_path / "x.csv")], capsys)
    assert rc == 2 and f"{bad} is damaged" in err
    assert not (tmp_path / "x.csv").exists()
    # the intact model passes the same check
    assert main(["inspect", str(SHIPPED_MODEL)]) == 0


class ConstantStep(torch.nn.Module):
    """A stand-in denoiser that predicts the same step for every atom."""

    def __init__(self, step: list[float]):
        super().__init__()
        self.register_buffer("step", torch.tensor(step, dtype=torch.float32))

    def forward(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(pos) + self.step


class Collapse(torch.nn.Module):
    """A stand-in denoiser that pulls every atom a fifth of the way towards the centre of the cloud."""

    def forward(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
        return 0.2 * (pos - pos.mean(dim=0))


def model_with(denoiser: torch.nn.Module, path: Path) -> Path:
    """The shipped model's classifier and metadata with another denoiser."""
    shipped = load_model(SHIPPED_MODEL)
    return save_model(path, torch.jit.script(denoiser), shipped.classifier, read_metadata(SHIPPED_MODEL))


@pytest.mark.parametrize("name, denoiser, words", [
    ("nan", ConstantStep([float("nan"), 0.0, 0.0]), "the denoiser returned NaN or Inf for oxygen 0"),
    ("runaway", ConstantStep([1e3, 0.0, 0.0]), "the denoiser returned a step of 1000 A (the limit is 10 A"),
    ("collapse", Collapse(), "the denoiser has collapsed them together"),
])
def test_runaway_denoiser_stops_with_a_message(ice, tmp_path, capsys, name, denoiser, words):
    model = model_with(denoiser, tmp_path / f"{name}.pth")
    dump = tmp_path / "ice.lammpstrj"
    dump.write_text(dump_text(*ice))
    rc, _, err = classify([str(dump), "--model", str(model), "--iterations", "30", "--out",
                           str(tmp_path / "x.csv")], capsys)
    assert rc == 2, err
    assert words in err and "the model file is damaged or not an icephase denoiser" in err


def test_denoising_step_is_bounded(ice, tmp_path):
    """A 5 A step (beyond MAX_STEP, below the runaway limit) moves every atom by exactly MAX_STEP."""
    pos, cell = ice
    model = load_model(model_with(ConstantStep([5.0, 0.0, 0.0]), tmp_path / "long.pth"))
    result = Pipeline(model, iterations=3).run(pos, cell, (True, True, True))
    assert result.denoising.max_steps == [pytest.approx(MAX_STEP)] * 3
    np.testing.assert_allclose(result.denoising.positions - pos, [[-3 * MAX_STEP, 0.0, 0.0]] * len(pos), atol=1e-5)


# ---- output files ----------------------------------------------------------------------------------------
def test_failing_run_leaves_an_existing_output_untouched(ice, tmp_path, capsys):
    pos, cell = ice
    good = dump_text(pos, cell)
    cut = dump_text(pos, cell, timestep=1).splitlines()[:-100]  # frame 1 lost its last 100 atom lines
    dump = tmp_path / "cut.lammpstrj"
    dump.write_text(good + "\n".join(cut) + "\n")
    out = tmp_path / "labels.csv"
    out.write_text("the previous results\n")
    rc, _, err = classify([str(dump), "--no-denoise", "--out", str(out), "--quiet"], capsys)
    assert rc == 2
    assert "frame 1 of" in err and "is truncated" in err
    assert f"the 1 frame(s) done so far are in {out}.partial" in err
    assert out.read_text() == "the previous results\n"
    assert set(read_csv(Path(f"{out}.partial"))) == {0}


@pytest.mark.parametrize("case", ["empty file", "frames past the end", "no atoms"])
def test_no_frames_or_no_atoms_is_an_error(ice, tmp_path, capsys, case):
    pos, cell = ice
    dump = tmp_path / "in.lammpstrj"
    frames = []
    if case == "empty file":
        dump.write_text("")
        words = f"no frame to classify in {dump}: it is empty"
    elif case == "frames past the end":
        dump.write_text(dump_text(pos, cell))
        frames = ["--frames", "5:"]
        words = f"no frame to classify in {dump}: --frames 5: selects none of its 1 frames"
    else:
        dump.write_text(dump_text(pos[:0], cell))
        words = "matched no atom"
    out = tmp_path / "labels.csv"
    rc, _, err = classify([str(dump), *frames, "--out", str(out)], capsys)
    assert rc == 2, err
    assert words in err
    assert not out.exists() and not Path(f"{out}.partial").exists()


# ---- calibrate ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ice_and_liquid(ice, tmp_path_factory):
    pos, cell = ice
    folder = tmp_path_factory.mktemp("calibrate")
    (folder / "ice.lammpstrj").write_text(dump_text(pos, cell))
    lpos, lcell = liquid_like(288, 1.0, np.random.default_rng(2))
    (folder / "liquid.lammpstrj").write_text(dump_text(lpos, lcell))
    (folder / "empty.lammpstrj").write_text("")
    return folder


@pytest.mark.parametrize("case", ["separated", "overlapping", "swapped", "overlapping with --force", "empty"])
def test_calibrate_refuses_to_store_a_threshold_from_bad_data(ice_and_liquid, tmp_path, capsys, case):
    folder = ice_and_liquid
    ice, liquid = str(folder / "ice.lammpstrj"), str(folder / "liquid.lammpstrj")
    inputs = {
        "separated": (ice, liquid), "overlapping": (ice, ice), "swapped": (liquid, ice),
        "overlapping with --force": (ice, ice), "empty": (ice, str(folder / "empty.lammpstrj")),
    }[case]
    written = tmp_path / "calibrated.pth"
    args = ["calibrate", "--ice", inputs[0], "--liquid", inputs[1], "--no-denoise", "--plot",
            str(tmp_path / "h.png"), "--write-model", str(written)] + (["--force"] if "force" in case else [])
    rc = main(args)
    err = capsys.readouterr().err
    if case in ("separated", "overlapping with --force"):
        assert rc == 0, err
        assert "raw/euclidean" in read_metadata(written)["thresholds"]
        return
    assert rc == 2 and not written.exists()
    if case == "empty":
        assert f"--liquid {inputs[1]}: no frames" in err
    else:
        assert "the ice and liquid distances overlap" in err and "not swapped" in err and "--force" in err


# ---- CUDA without CUDA ------------------------------------------------------------------------------------
def test_cuda_without_cuda_says_what_the_compute_says(ice, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    dump = tmp_path / "ice.lammpstrj"
    dump.write_text(dump_text(*ice))
    rc, _, err = classify([str(dump), "--device", "cuda", "--out", str(tmp_path / "x.csv")], capsys)
    assert rc == 2 and f"{CUDA_UNAVAILABLE}: use --device cpu" in err
    # the compute's message, from its source (C++ string literals joined)
    source = (REPO / "src" / "compute_icephase" / "compute_icephase.cpp").read_text()
    joined = "".join(part for part in source.split('"')[1::2])
    assert CUDA_UNAVAILABLE in joined


# ---- random bytes in an .xtc ---------------------------------------------------------------------------------
def test_random_bytes_in_an_xtc_give_one_clear_message(tmp_path):
    bad = tmp_path / "random.xtc"
    bad.write_bytes(np.random.default_rng(3).bytes(20000))
    proc = subprocess.run(
        [sys.executable, "-m", "icephase_lmp.cli", "classify", str(bad), "--top", str(GCICENET / "md_1h.tpr"),
         "--out", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert f"{bad} is not a readable GROMACS .xtc file" in proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr


def test_pipeline_rejects_nan_positions(ice):
    pos, cell = ice
    bad = pos.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DenoiseError, match="NaN or Inf"):
        Pipeline(load_model(SHIPPED_MODEL)).run(bad, cell, (True, True, True))
