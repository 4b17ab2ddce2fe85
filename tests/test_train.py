"""Training: seeded reproducibility, resume equals an uninterrupted run, outputs, bad input."""

import json

import numpy as np
import pytest
import torch

from icephase_lmp.cli import main
from icephase_lmp.model import DenoiserConfig
from icephase_lmp.train import TrainConfig, noisy_batch, train

SMALL = DenoiserConfig(num_layers=2, num_features=8)


def _config(**kw):
    base = dict(model=SMALL, steps=6, batch_size=2, checkpoint_every=3, lr=1e-3, references=["Ic", "VII"])
    base.update(kw)
    return TrainConfig(**base)


def _state(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_same_seed_same_run(tmp_path):
    train(_config(), tmp_path / "a", progress=False)
    train(_config(), tmp_path / "b", progress=False)
    la = np.loadtxt(tmp_path / "a" / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    lb = np.loadtxt(tmp_path / "b" / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    assert len(la) == 6 and np.array_equal(la, lb)
    for k, v in _state(tmp_path / "a").items():
        assert torch.equal(v, _state(tmp_path / "b")[k]), k
    train(_config(seed=1), tmp_path / "c", progress=False)
    lc = np.loadtxt(tmp_path / "c" / "loss.csv", delimiter=",", skiprows=1)[:, 1]
    assert not np.array_equal(la, lc)


def test_resume_equals_uninterrupted(tmp_path):
    full = train(_config(), tmp_path / "full", progress=False)
    assert full is not None and full.is_file()
    assert train(_config(), tmp_path / "split", progress=False, stop_after=3) is None
    assert not (tmp_path / "split" / "denoiser.pt").exists()
    train(_config(), tmp_path / "split", progress=False, resume=True)
    for k, v in _state(tmp_path / "full").items():
        assert torch.allclose(v, _state(tmp_path / "split")[k], rtol=0, atol=1e-7), k
    losses = np.loadtxt(tmp_path / "split" / "loss.csv", delimiter=",", skiprows=1)
    assert losses[:, 0].tolist() == [1, 2, 3, 4, 5, 6]


def test_resume_with_other_config_refused(tmp_path):
    train(_config(), tmp_path / "r", progress=False, stop_after=3)
    with pytest.raises(ValueError, match="differs"):
        train(_config(lr=5e-4), tmp_path / "r", progress=False, resume=True)


def test_run_folder_outputs(tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(run), "--steps", "3", "--batch-size", "2", "--num-layers", "1", "--num-features",
                 "8", "--reference", "VII", "--threads", "1"]) == 0
    for name in ("config.json", "loss.csv", "loss.png", "checkpoint.pt", "denoiser.pt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["references"] == ["VII"]
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_noisy_batch_targets_are_mean_free_noise(references):
    cfg = _config(batch_size=3)
    from icephase_lmp.references import Reference, supercell

    cells = [Reference(r.name, supercell(r.atoms, 12.0), r.source) for r in references[:2]]
    pos, ei, sh, target = noisy_batch(cells, cfg, np.random.default_rng(0))
    assert pos.shape == target.shape and ei.shape[0] == 2 and ei.shape[1] == sh.shape[0]
    assert abs(target.mean()) < 1e-9 or np.allclose(target.sum(axis=0), 0, atol=1e-9)
    # edges are within r_max (with image shifts)
    vec = pos[ei[1]] - pos[ei[0]] + sh
    assert np.linalg.norm(vec, axis=1).max() < cfg.model.r_max


def test_cuda_requested_but_absent(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path is for machines without it")
    with pytest.raises(RuntimeError, match="--device cpu"):
        train(_config(device="cuda"), tmp_path / "x", progress=False)
