"""The compact denoiser (compact_denoiser.py) computes what the nequip network it was read off computes."""

import numpy as np
import pytest
import torch

from conftest import liquid_like
from icephase_lmp.cli import main
from icephase_lmp.compact_denoiser import from_nequip, supports
from icephase_lmp.denoiser_kernel import KernelDenoiser
from icephase_lmp.denoiser_network import (
    DenoiserConfig,
    build_denoiser,
    denoiser_from_weights,
    inference_module,
    script_denoiser,
)
from icephase_lmp.geometry import neighbor_edges
from icephase_lmp.model_file import build_metadata, load_model, save_model
from icephase_lmp.references import load_references


def _graph(positions: np.ndarray, cell: np.ndarray, r_max: float = 4.5):
    edge_index, shift = neighbor_edges(positions, cell, (True, True, True), r_max)
    return (torch.tensor(positions, dtype=torch.float32), torch.tensor(edge_index),
            torch.tensor(shift, dtype=torch.float32))


def _noisy_ice(name: str, rng: np.random.Generator, sigma: float = 0.2):
    atoms = {r.name: r for r in load_references(None)}[name].atoms
    return atoms.positions + rng.normal(0.0, sigma, atoms.positions.shape), atoms.cell.array


def _trained_like(config: DenoiserConfig, seed: int):
    """A network whose weights are its initial ones plus noise of their own size: a freshly initialised
    network's output is tiny (~0.01 A), which would hide a wrong constant; this one moves atoms by ~1 A."""
    torch.manual_seed(seed)
    net = build_denoiser(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * p.std())
    return net.eval()


@pytest.mark.parametrize("config", [DenoiserConfig(), DenoiserConfig(num_layers=2, num_features=8, num_bessels=6)])
def test_compact_form_gives_the_networks_eps(config, rng):
    """Ice (several phases, with noise) and a liquid-like box, a network with every weight random: the
    compact module, eager and as the frozen TorchScript a model file stores, gives the same eps to float32
    rounding. A wrong constant, path or feature order moves eps by its own size."""
    net = _trained_like(config, seed=3)
    compact = from_nequip(net, config)
    frozen, form, arrays = inference_module(net, config)
    assert form == "compact"
    # the offline pipeline's form: the compiled message sums over the constants a model file stores
    # (32 features take the kernel's fixed-size loops, 8 its generic ones)
    kernel = KernelDenoiser(arrays)  # numpy in and out
    liquid, box = liquid_like(300, 0.0334, rng)
    configurations = [_noisy_ice(n, rng) for n in ("Ih", "III", "VII", "sI")] + [(liquid, box)]
    for positions, cell in configurations:
        args = _graph(positions, np.asarray(cell))
        with torch.no_grad():
            want = net(*args)
            scale = float(want.abs().max())
            assert scale > 0.01  # 500x the tolerance below: a wrong constant would show
            for module in (compact, frozen, kernel):
                got = torch.from_numpy(module(*(a.numpy() for a in args))) if module is kernel else module(*args)
                assert got.shape == want.shape
                assert float((got - want).abs().max()) < 2e-5 * max(scale, 1.0)


def test_edge_blocks_do_not_change_eps(rng):
    """Edges are taken in blocks (for the cache); any block size, with a ragged last block, gives the same eps."""
    config = DenoiserConfig(num_layers=2, num_features=8)
    compact = from_nequip(_trained_like(config, seed=4), config)
    positions, cell = _noisy_ice("Ih", rng)
    args = _graph(positions, np.asarray(cell))
    with torch.no_grad():
        compact.edge_block = 10**9
        whole = compact(*args)
        compact.edge_block = 97
        assert torch.allclose(compact(*args), whole, atol=1e-6)


def test_an_oxygen_without_neighbours_gets_a_finite_eps():
    config = DenoiserConfig(num_layers=2, num_features=8)
    net = _trained_like(config, seed=5)
    compact = from_nequip(net, config)
    pos = torch.tensor([[0.0, 0.0, 0.0], [2.8, 0.0, 0.0], [20.0, 20.0, 20.0]])
    ei = torch.tensor([[0, 1], [1, 0]])
    sh = torch.zeros(2, 3)
    with torch.no_grad():
        got, want = compact(pos, ei, sh), net(pos, ei, sh)
    assert torch.isfinite(got).all() and torch.allclose(got, want, atol=1e-5)


def test_architectures_without_a_compact_form_stay_nequip():
    config = DenoiserConfig(num_layers=1, num_features=4, all_parities=True)
    assert not supports(config)
    with pytest.raises(ValueError, match="no compact form"):
        from_nequip(build_denoiser(config), config)
    assert inference_module(build_denoiser(config), config)[1] == "nequip"


def test_shipped_models_store_the_compact_form_of_their_weights(rng):
    """Every shipped file: the stored denoiser is the compact form, and it is the network their stored
    weights (the ones fine-tuning starts from) make."""
    for name in ("icephase-7phase", "icephase-7phase-fast", "icephase-12phase"):
        model = load_model(name)
        assert model.metadata["denoiser_module"] == "compact"
        config = DenoiserConfig(**model.metadata["denoiser"])
        net = denoiser_from_weights(config, model.weights)
        positions, cell = _noisy_ice("VI", rng, sigma=0.15)
        args = _graph(positions, np.asarray(cell))
        with torch.no_grad():
            want = net(*args)
            assert float((model.denoiser(*args) - want).abs().max()) < 2e-5


def test_export_keep_classifier_stores_the_compact_form_and_keeps_the_rest(tmp_path, classifier, capsys):
    """`icephase export OLD.pth --out NEW.pth --keep-classifier` on a file whose denoiser is the scripted
    nequip network: the new file holds the compact form of the same weights, and the same classifier,
    thresholds and settings."""
    config = DenoiserConfig(num_layers=2, num_features=8)
    net = _trained_like(config, seed=6)
    classifier.thresholds = {"denoised/euclidean": 9.5}
    meta = build_metadata(config, classifier, iterations=3, tolerance=0.0, training={"steps_done": 7})
    old = save_model(tmp_path / "old.pth", script_denoiser(net), classifier, meta)
    new = tmp_path / "new.pth"
    assert main(["export", str(old), "--out", str(new), "--keep-classifier"]) == 0
    assert "classifier and settings kept" in capsys.readouterr().out
    a, b = load_model(old), load_model(new)
    assert b.metadata["denoiser_module"] == "compact" and "denoiser_module" not in a.metadata
    # the export also stores the compact constants that the offline kernel runs (the nequip file has none)
    assert a.compact is None and b.compact is not None and b.runs_kernel("cpu")
    assert {k: v for k, v in b.metadata.items() if k != "denoiser_module"} == a.metadata
    assert np.array_equal(a.classifier.ref_features, b.classifier.ref_features)
    assert set(a.weights) == set(b.weights) and all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    positions, cell = _noisy_ice("Ic", np.random.default_rng(1))
    args = _graph(positions, np.asarray(cell))
    with torch.no_grad():
        assert float((a.denoiser(*args) - b.denoiser(*args)).abs().max()) < 2e-5


def test_pairs_given_once_give_the_eps_of_both_directions():
    """forward_pairs (each pair once, its reverse implied) equals forward on the full list, frozen as a
    model file stores it; denoise() uses it and gives the positions of the full list."""
    from icephase_lmp.denoise import denoise

    config = DenoiserConfig(num_layers=2, num_features=8)
    net = _trained_like(config, seed=7)
    frozen, _, _ = inference_module(net, config)
    positions, cell = _noisy_ice("II", np.random.default_rng(11))
    pos, edge_index, shift = _graph(positions, np.asarray(cell))
    one_way = edge_index[0] < edge_index[1]
    assert 2 * int(one_way.sum()) == edge_index.shape[1]
    with torch.no_grad():
        full = frozen(pos, edge_index, shift)
        pairs = frozen.forward_pairs(pos, edge_index[:, one_way], shift[one_way])
    assert float(full.abs().max()) > 0.01 and float((pairs - full).abs().max()) < 2e-6

    class FullListOnly(torch.nn.Module):  # the same network without forward_pairs
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, p, e, s):
            return self.inner(p, e, s)

    paired = denoise(frozen, positions, cell, (True,) * 3, config.r_max, iterations=3).positions
    unpaired = denoise(FullListOnly(frozen), positions, cell, (True,) * 3, config.r_max, iterations=3).positions
    # this network moves atoms by ~1 A per step, so float32 rounding grows over the iterations; a missing
    # direction would move them by the size of a message
    assert np.abs(paired - unpaired).max() < 2e-4


def test_layer_by_layer_on_split_edge_lists_gives_forwards_eps(rng):
    """What the LAMMPS compute does on several ranks: each "rank" runs a layer for the edges of its own
    centres only, and before the next layer every node takes the row its owner computed. Two ranks splitting
    a noisy ice box (by x), through the frozen module a model file stores: the same eps as forward."""
    config = DenoiserConfig()
    frozen, _, _ = inference_module(_trained_like(config, seed=5), config)
    positions, cell = _noisy_ice("Ih", rng)
    pos, edge_index, shift = _graph(positions, np.asarray(cell))
    owner = torch.from_numpy((positions[:, 0] % cell[0, 0] > 0.5 * cell[0, 0]).astype(np.int64))
    with torch.no_grad():
        want = frozen(pos, edge_index, shift)
        radial, unit = frozen.edge_terms(pos, edge_index, shift)
        features = frozen.initial_features(len(pos), pos)
        for k in range(config.num_layers):
            merged = None
            for rank in (0, 1):
                mine = owner[edge_index[0]] == rank  # the edges whose centre this rank owns
                out = frozen.layer_step(k, features, radial[mine], unit[mine], edge_index[:, mine])
                merged = out.clone() if merged is None else merged
                merged[owner == rank] = out[owner == rank]
            features = merged
        got = frozen.eps_from_features(features)
    assert 0.1 < float(want.abs().max())
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    # and a layer run on only one rank's edges is wrong for the other rank's nodes: the merge matters
    with torch.no_grad():
        alone = frozen.layer_step(0, frozen.initial_features(len(pos), pos), radial, unit, edge_index)
        half = frozen.layer_step(0, frozen.initial_features(len(pos), pos), radial[owner[edge_index[0]] == 0],
                                 unit[owner[edge_index[0]] == 0], edge_index[:, owner[edge_index[0]] == 0])
    assert not torch.allclose(alone[owner == 1], half[owner == 1], atol=1e-3)


def test_blocks_of_nodes_and_edges_give_the_same_eps(rng):
    """The edge and node blocks only bound the memory a step touches: many small blocks (a box of a few
    hundred oxygens in blocks of 50 nodes and 100 edges) give the eps of one block each."""
    config = DenoiserConfig()
    net = _trained_like(config, seed=7)
    atoms = {r.name: r for r in load_references(None)}["III"].atoms.repeat((3, 3, 3))
    positions = atoms.positions + rng.normal(0.0, 0.2, atoms.positions.shape)
    args = _graph(positions, atoms.cell.array)
    whole = from_nequip(net, config)
    whole.edge_block, whole.node_block = 10**9, 10**9
    small = from_nequip(net, config)
    small.edge_block, small.node_block = 100, 50
    assert len(positions) > 4 * small.node_block
    with torch.no_grad():
        want = whole(*args)
        got = small(*args)
    assert float(want.abs().max()) > 0.1
    assert torch.allclose(got, want, atol=2e-6, rtol=0)
