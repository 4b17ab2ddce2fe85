"""The offline denoiser with compiled message sums (denoiser_kernel.py) against the TorchScript denoiser."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ice_next_to_disorder, liquid_like

from icephase_lmp import compact_denoiser, denoiser_kernel
from icephase_lmp.geometry import neighbor_edges
from icephase_lmp.model_file import COMPACT_FILE, load_model, read_weights
from icephase_lmp.pipeline import Pipeline


@pytest.fixture(scope="module")
def kernel_model(shipped_model):
    """The shipped model as loaded: its file must carry the compact constants for the kernel."""
    assert denoiser_kernel.available(), "icephase_lmp._denoiser_kernel was not built by the install"
    assert shipped_model.compact is not None, f"the shipped model has no {COMPACT_FILE}: re-store it (models/README.md)"
    return shipped_model


def graph(positions, cell, r_max):
    edges, shift = neighbor_edges(positions, cell, (True,) * 3, r_max)
    return (torch.tensor(positions, dtype=torch.float32), torch.tensor(edges),
            torch.tensor(shift, dtype=torch.float32))


@pytest.mark.parametrize("kind", ["ice next to disorder", "liquid"])
def test_kernel_gives_the_torchscript_eps(kernel_model, kind, rng):
    if kind == "liquid":
        positions, cell = liquid_like(400, 1.0, rng)
    else:
        positions, cell = ice_next_to_disorder()
    pos, edges, shift = graph(positions, cell, kernel_model.r_max)
    kernel = kernel_model.offline_denoiser("cpu")
    assert isinstance(kernel, denoiser_kernel.KernelDenoiser)
    one_way = edges[0] < edges[1]
    with torch.no_grad():
        reference = kernel_model.denoiser(pos, edges, shift).numpy()
    full = kernel(pos.numpy(), edges.numpy(), shift.numpy())
    paired = kernel.forward_pairs(pos.numpy(), edges[:, one_way].numpy(), shift[one_way].numpy())
    # the radial MLP per edge instead of the table (speed.py's --baseline-radial network)
    untabulated = denoiser_kernel.KernelDenoiser(kernel_model.compact, tabulated=False).forward_pairs(
        pos.numpy(), edges[:, one_way].numpy(), shift[one_way].numpy())
    assert np.abs(reference).max() > 0.05  # the test is not comparing zeros
    for eps in (full, paired, untabulated):
        np.testing.assert_allclose(eps, reference, atol=2e-5, rtol=0)


def test_kernel_reuses_its_arrays_safely(kernel_model, rng):
    """The kernel keeps its intermediate arrays between calls (denoiser_kernel._Workspace): calls on systems
    of other sizes in between, from this thread and from another, must not change a result."""
    from concurrent.futures import ThreadPoolExecutor

    kernel = denoiser_kernel.KernelDenoiser(kernel_model.compact)
    systems = [liquid_like(400, 1.0, rng), ice_next_to_disorder(), liquid_like(150, 1.0, rng)]
    graphs = []
    for positions, cell in systems:
        pos, edges, shift = graph(positions, cell, kernel_model.r_max)
        one_way = edges[0] < edges[1]
        graphs.append((pos.numpy(), edges[:, one_way].numpy(), shift[one_way].numpy()))
    first = [kernel.forward_pairs(*g).copy() for g in graphs]
    for again, expected in zip([kernel.forward_pairs(*g) for g in reversed(graphs)], reversed(first)):
        np.testing.assert_array_equal(again, expected)
    with ThreadPoolExecutor(3) as pool:
        for again, expected in zip(pool.map(lambda g: kernel.forward_pairs(*g), graphs * 3), first * 3):
            np.testing.assert_array_equal(again, expected)


def test_stored_constants_are_the_compact_form_of_the_stored_weights(kernel_model):
    """compact_denoiser.npz holds exactly what to_arrays gives for the network of denoiser_weights.npz."""
    from icephase_lmp.denoiser_network import DenoiserConfig, denoiser_from_weights

    config = DenoiserConfig(**kernel_model.metadata["denoiser"])
    network = denoiser_from_weights(config, kernel_model.network_weights())
    again = compact_denoiser.to_arrays(compact_denoiser.from_nequip(network, config))
    assert set(again) == set(kernel_model.compact)
    for name, value in again.items():
        np.testing.assert_allclose(value.numpy(), kernel_model.compact[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_classify_needs_no_torch(tmp_path):
    """With the kernel and a model file that carries the compact constants, `icephase classify` of a frame
    denoises without importing torch (it would cost 1-2 s of start-up); the labels are written."""
    positions, cell = ice_next_to_disorder()
    frame = tmp_path / "frame.lammpstrj"
    lines = ["ITEM: TIMESTEP", "0", "ITEM: NUMBER OF ATOMS", str(len(positions)), "ITEM: BOX BOUNDS pp pp pp"]
    lines += [f"0 {cell[k, k]}" for k in range(3)] + ["ITEM: ATOMS id type x y z"]
    lines += [f"{i + 1} 1 {x} {y} {z}" for i, (x, y, z) in enumerate(positions)]
    frame.write_text("\n".join(lines) + "\n")
    code = ("import sys; from icephase_lmp.cli import main; rc = main(['classify', sys.argv[1], '--out', sys.argv[2]]);"
            " print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, str(frame), str(tmp_path / "labels.csv")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "no torch", run.stdout[-2000:]
    rows = (tmp_path / "labels.csv").read_text().splitlines()
    assert len(rows) == len(positions) + 1 and ",Ih," in rows[1]


def test_pipeline_labels_with_and_without_the_kernel(kernel_model):
    positions, cell = ice_next_to_disorder()
    with_kernel = Pipeline(kernel_model).run(positions, cell, (True,) * 3)
    plain = load_model(kernel_model.path)
    plain.compact = None  # as a file without the constants: the TorchScript denoiser runs
    assert plain.offline_denoiser("cpu") is plain.denoiser
    without = Pipeline(plain).run(positions, cell, (True,) * 3)
    assert np.array_equal(with_kernel.codes, without.codes)
    assert (with_kernel.codes > 0).any() and (with_kernel.codes == 0).any()
    np.testing.assert_allclose(with_kernel.positions, without.positions, atol=1e-4)


def test_saved_model_keeps_the_constants(kernel_model, tmp_path):
    from icephase_lmp.model_file import save_model

    out = save_model(tmp_path / "copy.pth", kernel_model.denoiser, kernel_model.classifier, kernel_model.metadata,
                     kernel_model.weights, kernel_model.compact)
    stored = read_weights(out, COMPACT_FILE)
    assert stored.keys() == kernel_model.compact.keys()
    assert isinstance(load_model(out).offline_denoiser("cpu"), denoiser_kernel.KernelDenoiser)
    bare = save_model(tmp_path / "bare.pth", kernel_model.denoiser, kernel_model.classifier, kernel_model.metadata,
                      kernel_model.weights)
    assert read_weights(bare, COMPACT_FILE) is None
    assert load_model(bare).offline_denoiser("cpu") is not None


def test_kernel_rejects_bad_indices_and_outputs():
    from icephase_lmp import _denoiser_kernel

    f, n = 2, 2
    w = np.ones((1, 4 * f), np.float32)
    hs, hv = np.ones((n, f), np.float32), np.ones((3 * n, f), np.float32)
    unit = np.array([[1.0, 0.0, 0.0]], np.float32)
    out_s, out_v = np.full((n, 2 * f), np.nan, np.float32), np.full((3 * n, 2 * f), np.nan, np.float32)
    _denoiser_kernel.message_sums(w, hs, hv, unit, np.array([1]), np.array([0]), n, f, False, False, out_s, out_v)
    # node 0 receives the edge's messages; node 1 receives none, and its rows are written as zeros
    assert out_s[0].any() and out_v[:3].any() and not out_s[1].any() and not out_v[3:].any()
    with pytest.raises(ValueError, match="out of range"):
        _denoiser_kernel.message_sums(w, hs, hv, unit, np.array([2]), np.array([0]), n, f, False, False, out_s, out_v)
    with pytest.raises(ValueError, match="hv must be"):
        _denoiser_kernel.message_sums(w, hs, hv[:3], unit, np.array([1]), np.array([0]), n, f, False, False, out_s,
                                      out_v)
    # an output the kernel could only fill through a converted copy is refused, not silently left unwritten
    for bad_s in (out_s.astype(np.float64), np.zeros((2 * f, n), np.float32).T, out_s[:1]):
        with pytest.raises(ValueError, match="out_s must be a writable C-contiguous float32"):
            _denoiser_kernel.message_sums(w, hs, hv, unit, np.array([1]), np.array([0]), n, f, False, False, bad_s,
                                          out_v)


def radial_weights(table: np.ndarray, lengths: np.ndarray, r_max: float) -> np.ndarray:
    """_denoiser_kernel.radial_weights into a new array."""
    from icephase_lmp import _denoiser_kernel

    out = np.empty((len(lengths), table.shape[1]), np.float32)
    _denoiser_kernel.radial_weights(table, lengths, r_max, out)
    return out


def exact_radial_weights(arrays, k, lengths):
    """CompactLayer.radial_weights in float64: the radial MLP on the basis, per edge (what the table replaces)."""
    basis = denoiser_kernel.radial_basis(lengths, np.asarray(arrays["bessel"], np.float64), float(arrays["r_max"]),
                                         float(arrays["cutoff_power"]))
    hidden = basis @ np.asarray(arrays[f"layer{k}.radial_in"], np.float64)
    return hidden / (1.0 + np.exp(-hidden)) @ np.asarray(arrays[f"layer{k}.radial_out"], np.float64)


def test_radial_table_is_as_close_as_float32(kernel_model, rng):
    """Each layer's tabulated radial weights against the radial MLP evaluated in float64, at lengths from the
    closest oxygens to the cutoff: within 1e-6 (the MLP in float32 is 5e-6-9e-6 off), where a table of 64
    points is ~1e-3 off (so the check tells a fine table from a coarse one)."""
    from icephase_lmp import _denoiser_kernel

    arrays = kernel_model.compact
    r_max = float(arrays["r_max"])
    lengths = rng.uniform(2.0, r_max, 20000).astype(np.float32)
    fine, coarse = denoiser_kernel.radial_tables(arrays), denoiser_kernel.radial_tables(arrays, points=64)
    assert len(fine) == 3
    for k in range(len(fine)):
        exact = exact_radial_weights(arrays, k, lengths.astype(np.float64))
        assert np.abs(exact).max() > 0.3  # not comparing zeros
        name = f"layer{k}.radial_table"
        assert fine[name].shape[0] == denoiser_kernel.RADIAL_TABLE_POINTS
        assert np.abs(radial_weights(fine[name], lengths, r_max) - exact).max() < 1e-6
        assert np.abs(radial_weights(coarse[name], lengths, r_max) - exact).max() > 1e-4


def test_radial_table_ends(kernel_model):
    """Lengths at and beyond the ends of the table take the end values (the weights at the cutoff are 0, as
    the cutoff function makes them), NaN the value at 0; a table too short to interpolate is refused."""
    from icephase_lmp import _denoiser_kernel

    arrays = kernel_model.compact
    r_max = float(arrays["r_max"])
    table = denoiser_kernel.radial_tables(arrays)["layer1.radial_table"]
    w = radial_weights(table, np.array([r_max, r_max + 3.0, 0.0, -1.0, np.nan], np.float32), r_max)
    assert np.abs(w[:2]).max() < 1e-6
    np.testing.assert_allclose(w[2:], np.repeat(table[1:2], 3, axis=0))
    assert np.abs(table[1]).max() > 0.01  # the weights at 0 are not zero: the comparison above means something
    with pytest.raises(ValueError, match="points >= 5"):
        radial_weights(table[:4], np.array([1.0], np.float32), r_max)
    with pytest.raises(ValueError, match="out must be"):
        _denoiser_kernel.radial_weights(table, np.array([1.0], np.float32), r_max, np.empty((2, table.shape[1])))


def test_weights_computed_where_used_match_stored_weights(kernel_model, rng):
    """tabulated_message_sums interpolates each edge's weights where a message needs them; the sums are those of
    radial_weights followed by message_sums, bit for bit (the same arithmetic in the same order), in both
    directions of each pair and in the first layer too, and its inputs are checked the same way."""
    from icephase_lmp import _denoiser_kernel

    arrays = kernel_model.compact
    r_max, f = float(arrays["r_max"]), 32
    tables = denoiser_kernel.radial_tables(arrays)
    n, e = 60, 400
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    lengths = rng.uniform(2.0, r_max + 0.5, e).astype(np.float32)
    unit = rng.standard_normal((e, 3)).astype(np.float32)
    hs, hv = rng.standard_normal((n, f)).astype(np.float32), rng.standard_normal((3 * n, f)).astype(np.float32)
    for k, first in ((0, True), (1, False), (2, False)):
        table = tables[f"layer{k}.radial_table"]
        width_s = f if first else 2 * f
        for paired in (False, True):
            stored = [np.empty((n, width_s), np.float32), np.empty((3 * n, width_s), np.float32)]
            w = np.empty((e, table.shape[1]), np.float32)
            _denoiser_kernel.radial_weights(table, lengths, r_max, w)
            _denoiser_kernel.message_sums(w, hs, hv, unit, src, dst, n, f, first, paired, *stored)
            direct = [np.full_like(stored[0], np.nan), np.full_like(stored[1], np.nan)]
            _denoiser_kernel.tabulated_message_sums(table, lengths, r_max, hs, hv, unit, src, dst, n, f, first,
                                                    paired, *direct)
            assert np.abs(stored[0]).max() > 0.1
            np.testing.assert_array_equal(direct[0], stored[0])
            np.testing.assert_array_equal(direct[1], stored[1])
    with pytest.raises(ValueError, match="w must be"):  # the table's width must be the layer's 4F
        _denoiser_kernel.tabulated_message_sums(tables["layer0.radial_table"], lengths, r_max, hs, hv, unit, src,
                                                dst, n, f, False, True, *stored)
    with pytest.raises(ValueError, match="out of range"):
        _denoiser_kernel.tabulated_message_sums(tables["layer1.radial_table"], lengths, r_max, hs, hv, unit,
                                                src + n, dst, n, f, False, True, *stored)


def test_without_the_compiled_kernel_the_torchscript_denoiser_runs(kernel_model, monkeypatch):
    """An installation built without a C++ compiler has no _denoiser_kernel: load_model then loads the
    TorchScript denoiser at once and the pipeline denoises with it, to the same labels."""
    positions, cell = ice_next_to_disorder()
    with_kernel = Pipeline(kernel_model).run(positions, cell, (True,) * 3)
    lazy = load_model(kernel_model.path)  # with the kernel, the TorchScript module stays in the file until asked
    assert lazy.torchscript is None and lazy.denoiser is not None and lazy.torchscript is lazy.denoiser
    monkeypatch.setattr(denoiser_kernel, "_denoiser_kernel", None)
    model = load_model(kernel_model.path)
    assert not model.runs_kernel("cpu") and model.torchscript is not None
    assert model.offline_denoiser("cpu") is model.denoiser
    plain = Pipeline(model).run(positions, cell, (True,) * 3)
    assert np.array_equal(plain.codes, with_kernel.codes)
