"""Training: seeded reproducibility, resume equals an uninterrupted run, outputs, bad input."""

import json

import numpy as np
import pytest
import torch

from icephase_lmp.cli import main
from icephase_lmp.errors import DeviceError
from icephase_lmp.denoiser_network import DenoiserConfig
from icephase_lmp.train import (TrainConfig, batch_edges, initial_denoiser, load_trained, noisy_batch, train,
                                 unrolled_loss)

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
    pos, ei, sh, target, samples = noisy_batch(cells, cfg, np.random.default_rng(0))
    assert pos.shape == target.shape and ei.shape[0] == 2 and ei.shape[1] == sh.shape[0]
    assert sum(n for _, n in samples) == len(pos)
    # the edges rebuilt per sample (as the unrolled loss does after a step) are the batch's edges
    ei2, sh2 = batch_edges(pos, samples, cfg.model.r_max)
    assert {tuple(e) for e in ei.T} == {tuple(e) for e in ei2.T}
    assert abs(target.mean()) < 1e-9 or np.allclose(target.sum(axis=0), 0, atol=1e-9)
    # edges are within r_max (with image shifts)
    vec = pos[ei[1]] - pos[ei[0]] + sh
    assert np.linalg.norm(vec, axis=1).max() < cfg.model.r_max


def test_cuda_requested_but_absent(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path is for machines without it")
    with pytest.raises(DeviceError, match="--device cpu"):
        train(_config(device="cuda"), tmp_path / "x", progress=False)


def test_unrolled_loss_of_one_step_is_the_papers_loss_and_chains_the_steps(references):
    """unroll 1: ||delta - eps(r + delta)||^2; unroll 2: the second step sees what the first left."""
    from icephase_lmp.denoiser_network import build_denoiser, prepare_torch
    from icephase_lmp.references import Reference, supercell

    cfg = _config(batch_size=2)
    prepare_torch()
    torch.manual_seed(0)
    model = build_denoiser(cfg.model).eval()
    cells = [Reference(r.name, supercell(r.atoms, 12.0), r.source) for r in references[:2]]
    pos, ei, sh, target, samples = noisy_batch(cells, cfg, np.random.default_rng(1))
    device = torch.device("cpu")
    with torch.no_grad():
        one = unrolled_loss(model, pos, ei, sh, target, samples, 1, cfg.model.r_max, device)
        first = model(torch.tensor(pos, dtype=torch.float32), torch.tensor(ei), torch.tensor(sh, dtype=torch.float32))
        assert float(one) == pytest.approx(float((first - torch.tensor(target, dtype=torch.float32)).square().sum(1).mean()))
        # by hand: step 2 on the positions step 1 left, with freshly built edges
        moved = pos - first.numpy().astype(np.float64)
        ei2, sh2 = batch_edges(moved, samples, cfg.model.r_max)
        second = model(torch.tensor(moved, dtype=torch.float32), torch.tensor(ei2), torch.tensor(sh2, dtype=torch.float32))
        left = (first + second - torch.tensor(target, dtype=torch.float32)).square().sum(1).mean()
        two = unrolled_loss(model, pos, ei, sh, target, samples, 2, cfg.model.r_max, device)
        last = unrolled_loss(model, pos, ei, sh, target, samples, 2, cfg.model.r_max, device, last_only=True)
    assert float(two) == pytest.approx((float(one) + float(left)) / 2, rel=1e-4)
    # --unroll-loss last: only the noise the second step left
    assert float(last) == pytest.approx(float(left), rel=1e-4)


def test_fine_tuning_starts_from_the_model_files_weights():
    """--init-from: the eager copy computes what the file's TorchScript denoiser computes (the file stores the
    compact form of the same weights: equal to float32 rounding, compact_denoiser.py)."""
    from conftest import SHIPPED_MODEL as shipped_model_path
    from icephase_lmp.configs import DenoiserConfig
    from icephase_lmp.geometry import neighbor_edges
    from icephase_lmp.model_file import load_model, read_metadata
    from icephase_lmp.references import builtin_reference, supercell

    cfg = TrainConfig(model=DenoiserConfig(**read_metadata(shipped_model_path)["denoiser"]))
    eager = initial_denoiser(shipped_model_path, cfg).eval()
    scripted = load_model(shipped_model_path).denoiser
    atoms = supercell(builtin_reference("III").atoms, 12.0)
    pos = atoms.positions + np.random.default_rng(0).normal(0, 0.2, atoms.positions.shape)
    ei, sh = neighbor_edges(pos, atoms.cell.array, (True,) * 3, cfg.model.r_max)
    args = (torch.tensor(pos, dtype=torch.float32), torch.tensor(ei), torch.tensor(sh, dtype=torch.float32))
    with torch.no_grad():
        want = eager(*args)
        assert float(want.abs().max()) > 0.05  # a real displacement, far above the tolerance
        assert float((scripted(*args) - want).abs().max()) < 2e-5
    with pytest.raises(ValueError, match="architecture"):
        initial_denoiser(shipped_model_path, TrainConfig(model=DenoiserConfig(num_features=8)))


def test_fine_tuning_from_a_run_folder(tmp_path):
    """--init-from RUN_DIR: the run's weights, and its architecture replaces the command line's."""
    run = tmp_path / "base"
    train(_config(steps=2, checkpoint_every=2), run, progress=False)
    assert main(["train", str(tmp_path / "ft"), "--init-from", str(run), "--unroll", "2", "--steps", "2",
                 "--batch-size", "1", "--reference", "VII", "--threads", "1"]) == 0
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["model"] == json.loads((run / "config.json").read_text())["model"] and saved["unroll"] == 2
    eager, _ = load_trained(run)
    start = initial_denoiser(run, TrainConfig.from_dict(saved))
    assert all(torch.equal(a, b) for a, b in zip(eager.state_dict().values(), start.state_dict().values()))


def test_fine_tuning_to_a_new_cutoff(tmp_path):
    """--init-from with --new-r-max: every weight is the source's, the cutoff is the new one (edges beyond it
    are ignored by the new network), and the run's config records the new cutoff. Without --init-from the
    option is refused."""
    from icephase_lmp.geometry import neighbor_edges
    from icephase_lmp.references import builtin_reference, supercell

    run = tmp_path / "base"
    train(_config(steps=2, checkpoint_every=2), run, progress=False)
    assert main(["train", str(tmp_path / "ft"), "--init-from", str(run), "--new-r-max", "3.6", "--steps", "2",
                 "--batch-size", "1", "--reference", "VII", "--threads", "1"]) == 0
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["model"]["r_max"] == 3.6
    source, _ = load_trained(run)
    start = initial_denoiser(run, TrainConfig.from_dict(saved)).eval()
    new, old = start.state_dict(), source.state_dict()
    assert set(new) == set(old)
    for key in new:
        if key.endswith("_rmax_recip"):
            assert float(new[key]) == pytest.approx(1 / 3.6) and float(old[key]) != pytest.approx(1 / 3.6)
        else:
            assert torch.equal(new[key], old[key]), key
    # the new network only sees edges shorter than its cutoff: adding longer ones changes nothing
    atoms = supercell(builtin_reference("Ih").atoms, 12.0)
    pos = atoms.positions + np.random.default_rng(1).normal(0, 0.1, atoms.positions.shape)
    outs = []
    for cutoff in (3.6, 4.5):
        ei, sh = neighbor_edges(pos, atoms.cell.array, (True,) * 3, cutoff)
        with torch.no_grad():
            outs.append(start(torch.tensor(pos, dtype=torch.float32), torch.tensor(ei),
                              torch.tensor(sh, dtype=torch.float32)))
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    with pytest.raises(SystemExit, match="--new-r-max needs --init-from"):
        main(["train", str(tmp_path / "x"), "--new-r-max", "4.0", "--steps", "1"])


def test_reference_weights_set_how_often_each_reference_is_drawn(references):
    from icephase_lmp.references import Reference, supercell

    cells = [Reference(r.name, supercell(r.atoms, 12.0), r.source) for r in references[:3]]
    sizes = [len(c.atoms) for c in cells]
    assert len(set(sizes)) == 3  # each sample's reference is read back from its size

    def drawn(weights, batches=40):
        cfg = _config(batch_size=8, reference_weights=weights)
        rng = np.random.default_rng(3)
        counts = dict.fromkeys(sizes, 0)
        for _ in range(batches):
            for _, n in noisy_batch(cells, cfg, rng)[4]:
                counts[n] += 1
        return np.array([counts[s] for s in sizes]) / (8 * batches)

    even = drawn({})
    assert np.all(np.abs(even - 1 / 3) < 0.1)
    # the second reference 6 times as often as each unnamed one: 6/8 of the samples
    heavy = drawn({cells[1].name: 6.0})
    assert abs(heavy[1] - 0.75) < 0.08 and np.all(heavy[[0, 2]] > 0.05)
    # equal shares draw exactly as before weights existed (same seed, same batches)
    a = noisy_batch(cells, _config(batch_size=4), np.random.default_rng(9))[0]
    b = noisy_batch(cells, _config(batch_size=4, reference_weights={}), np.random.default_rng(9))[0]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("weights, message", [({"XII": 2.0}, "not references of this run"),
                                              ({"Ic": 0.0}, "positive"), ({"Ic": float("nan")}, "positive")])
def test_bad_reference_weights_are_refused_before_training(tmp_path, weights, message):
    with pytest.raises(ValueError, match=message):
        train(_config(reference_weights=weights), tmp_path / "w", progress=False)
    assert not (tmp_path / "w" / "loss.csv").exists()


def test_reference_weight_on_the_command_line(tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(run), "--steps", "2", "--batch-size", "2", "--num-layers", "1", "--num-features", "8",
                 "--reference", "Ic", "--reference", "VII", "--reference-weight", "VII=4", "--threads", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["reference_weights"] == {"VII": 4.0}
    assert main(["train", str(tmp_path / "bad"), "--steps", "2", "--reference", "Ic", "--reference-weight", "Ic"]) != 0
