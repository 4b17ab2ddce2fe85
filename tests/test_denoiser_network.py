"""The denoiser network: equivariance, translation invariance, TorchScript round trip."""

import numpy as np
import pytest
import torch

from icephase_lmp.geometry import neighbor_edges
from icephase_lmp.denoiser_network import DenoiserConfig, build_denoiser, script_denoiser
from icephase_lmp.references import supercell


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_denoiser(DenoiserConfig()).eval()


def _call(model, pos, cell):
    ei, sh = neighbor_edges(pos, cell, (True, True, True), 4.5)
    with torch.no_grad():
        return model(torch.tensor(pos, dtype=torch.float32), torch.tensor(ei), torch.tensor(sh, dtype=torch.float32)).numpy()


@pytest.fixture(scope="module")
def noisy_ice(references):
    atoms = supercell(references[2].atoms, 10.0)  # ice II: a triclinic (rhombohedral) cell
    rng = np.random.default_rng(5)
    return atoms.positions + rng.normal(0, 0.2, atoms.positions.shape), atoms.cell.array


def test_output_is_float32_vector_per_atom(model, noisy_ice):
    pos, cell = noisy_ice
    out = _call(model, pos, cell)
    assert out.shape == pos.shape and out.dtype == np.float32
    assert np.abs(out).max() > 0  # a fresh network still gives a non-trivial output


def test_rotation_equivariance(model, noisy_ice):
    pos, cell = noisy_ice
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))  # proper rotation
    out = _call(model, pos, cell)
    out_rot = _call(model, pos @ rot.T, cell @ rot.T)
    assert np.allclose(out_rot, out @ rot.T, atol=2e-5 * np.abs(out).max() + 1e-7)


def test_translation_invariance(model, noisy_ice):
    pos, cell = noisy_ice
    out = _call(model, pos, cell)
    shifted = _call(model, pos + np.array([1.3, -7.1, 2.2]), cell)
    assert np.allclose(shifted, out, atol=1e-5 * np.abs(out).max() + 1e-7)


def test_torchscript_round_trip_is_identical(model, noisy_ice, tmp_path):
    pos, cell = noisy_ice
    path = tmp_path / "denoiser.pt"
    torch.jit.save(script_denoiser(model), str(path))
    loaded = torch.jit.load(str(path))
    assert np.array_equal(_call(loaded, pos, cell), _call(model, pos, cell))


def test_receptive_field_is_layers_times_cutoff():
    assert DenoiserConfig(r_max=4.0, num_layers=3).receptive_field == 12.0
