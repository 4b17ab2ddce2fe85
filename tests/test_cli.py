"""The icephase command line, end to end (classify uses the shipped model)."""

import csv

import numpy as np
import pytest
from ase.io import read

from conftest import GCICENET, SHIPPED_MODEL
from icephase_lmp.cli import main


def test_references_lists_the_seven_phases(capsys):
    assert main(["references"]) == 0
    out = capsys.readouterr().out
    for name in ("Ih", "Ic", "II", "III", "VI", "VII", "sI"):
        assert f" {name} " in out
    assert "0.921" in out  # GenIce2's ice Ih density


def test_references_export_and_user_reference(tmp_path, capsys):
    assert main(["references", "--reference", "V=5@1.24", "--reference", "Ih", "--export", str(tmp_path),
                 "--min-width", "10"]) == 0
    v = read(tmp_path / "V.extxyz")
    assert set(v.get_chemical_symbols()) == {"O"} and min(v.cell.lengths()) >= 10
    assert "1.240" in capsys.readouterr().out


def test_classify_gcicenet_frame_to_csv(tmp_path, capsys):
    out = tmp_path / "labels.csv"
    rc = main(["classify", str(GCICENET / "md_7_10frame.xtc"), "--top", str(GCICENET / "md_7.tpr"),
               "--frames", "0:2", "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0].keys()) == ["frame", "index", "code", "phase", "distance", "cluster"]
    assert len(rows) == 2 * 1024  # the README's count of molecules in md_7
    assert {r["frame"] for r in rows} == {"0", "1"}
    phases = [r["phase"] for r in rows]
    assert phases.count("VII") / len(phases) > 0.99
    assert all(r["code"] == "6" for r in rows if r["phase"] == "VII")
    # a periodic crystal is one ice cluster: every molecule of it has cluster id 1
    assert all(r["cluster"] == "1" for r in rows if r["phase"] == "VII")
    lines = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in lines if line.startswith("frame"))
    row = dict(zip(header, next(line.split() for line in lines if line.startswith("    0"))))
    assert row["VII"] == "1024" and row["largest"] == "1024" and row["liquid"] == "0"


@pytest.mark.parametrize("system, phase", [("3", "III"), ("w", "liquid")])
def test_the_fast_model_by_name_labels_gcicenet(tmp_path, system, phase):
    """The second shipped model (4 iterations) names ice III, the phase that needs denoising most, and the
    liquid; it is found by its bare name."""
    out = tmp_path / "labels.csv"
    assert main(["classify", str(GCICENET / f"md_{system}_10frame.xtc"), "--top", str(GCICENET / f"md_{system}.tpr"),
                 "--frames", "0", "--model", "icephase-7phase-fast", "--quiet", "--out", str(out)]) == 0
    phases = [r["phase"] for r in csv.DictReader(out.open())]
    assert phases.count(phase) / len(phases) > 0.99


def test_classify_writes_denoised_frames(tmp_path):
    out, den = tmp_path / "l.extxyz", tmp_path / "d.extxyz"
    assert main(["classify", str(GCICENET / "md_1h_10frame.xtc"), "--top", str(GCICENET / "md_1h.tpr"),
                 "--frames", "0", "--out", str(out), "--write-denoised", str(den), "--quiet"]) == 0
    raw, clean = read(out), read(den)
    assert len(raw) == len(clean) == 1024
    moved = np.linalg.norm(clean.positions - raw.positions, axis=1)
    assert 0.05 < np.median(moved) < 1.0  # thermal noise of ice at MD temperature is a few tenths of an A


@pytest.mark.parametrize(
    "args, words",
    [
        (["classify", "missing.lammpstrj", "--out", "x.csv"], "missing.lammpstrj"),
        (["classify", str(GCICENET / "md_1h_10frame.xtc"), "--out", "x.csv"], "--top"),
        (["classify", str(GCICENET / "md_1h_10frame.xtc"), "--top", str(GCICENET / "md_1h.tpr"),
          "--select", "name XX", "--out", "x.csv"], "matched no atom"),
        (["classify", str(GCICENET / "md_1h_10frame.xtc"), "--top", str(GCICENET / "md_1h.tpr"),
          "--out", "x.unknownext"], "x.unknownext"),
        (["classify", str(GCICENET / "md_1h_10frame.xtc"), "--top", str(GCICENET / "md_1h.tpr"),
          "--frames", "a:b", "--out", "x.csv"], "a:b"),
        (["classify", str(GCICENET / "md_1h_10frame.xtc"), "--top", str(GCICENET / "md_1h.tpr"),
          "--model", "nope.pth", "--out", "x.csv"], "does not exist"),
        (["references", "--reference", "Ih", "--reference", "Ih"], "unique"),
    ],
)
def test_bad_input_gives_a_clear_error(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_help_and_inspect_do_not_import_torch():
    """torch takes seconds to import: `icephase --help` and `icephase inspect` must not need it."""
    import subprocess
    import sys

    code = ("import sys\nfrom icephase_lmp.cli import main\n"
            "for argv in (['--help'], ['inspect']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-TORCH") and "boundary step" in out.stdout


def test_plot_draws_fractions_and_the_largest_cluster(tmp_path, capsys):
    from PIL import Image

    rows = ["frame,index,code,phase,distance,cluster"]
    for frame in range(3):  # 10 molecules: `frame + 2` of them Ih in one cluster, the rest liquid
        rows += [f"{frame},{k},{1 if k < frame + 2 else 0},x,1.0,{1 if k < frame + 2 else 0}" for k in range(10)]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    assert main(["plot", str(labels)]) == 0
    assert "3 frames plotted" in capsys.readouterr().out
    img = np.asarray(Image.open(tmp_path / "labels.png").convert("RGB"))
    assert img.shape[0] > img.shape[1] * 0.7  # two panels: fractions above, the largest cluster below
    assert len({tuple(c) for c in img.reshape(-1, 3)}) > 20
    # a file from before the cluster column: fractions only, in the wide one-panel shape
    old = tmp_path / "old.csv"
    old.write_text("\n".join(",".join(r.split(",")[:5]) for r in rows) + "\n")
    assert main(["plot", str(old), "--out", str(tmp_path / "old.png")]) == 0
    img = np.asarray(Image.open(tmp_path / "old.png").convert("RGB"))
    assert img.shape[0] < img.shape[1] * 0.7
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["plot", str(bad)]) == 2
    assert "not an icephase labels .csv" in capsys.readouterr().err


@pytest.mark.slow
def test_calibrate_write_model_keeps_a_trainable_denoiser(tmp_path):
    """The file calibrate writes holds the model's denoiser with its weights as parameters, unchanged, so
    that export and fine-tuning (`train --init-from`) still work on it."""
    import torch

    from icephase_lmp.model_file import load_model

    out = tmp_path / "calibrated.pth"
    liquid = f"{GCICENET / 'md_w_10frame.xtc'},{GCICENET / 'md_w.tpr'}"
    assert main(["calibrate", "--noisy-references", "0.1", "--liquid", liquid, "--select", "name OW",
                 "--frames", "0:1", "--plot", str(tmp_path / "h.png"), "--write-model", str(out)]) == 0

    written, shipped = load_model(out), load_model(SHIPPED_MODEL)
    assert written.weights and written.weights.keys() == shipped.weights.keys()
    assert all(np.array_equal(written.weights[k], shipped.weights[k]) for k in shipped.weights)
    pos = torch.randn(40, 3) * 3
    ei, sh = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]]), torch.zeros(4, 3)
    with torch.no_grad():
        assert torch.equal(written.denoiser(pos, ei, sh), shipped.denoiser(pos, ei, sh))
