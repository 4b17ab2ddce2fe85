"""The compact denoiser offline on CPU in numpy, with its message sums compiled (``_denoiser_kernel.cpp``).

Why. In TorchScript a layer of the compact denoiser builds each edge's messages as (E, 8F) arrays one
elementwise product at a time and sums them onto the centres with ``index_add_``; with ~10 edges per oxygen
those passes through memory were most of a layer. The kernel sums each centre's incoming messages in one
pass. The rest of a layer (the radial MLP, the linear maps, the gated update) is a few matrix products, which
numpy's BLAS does as fast as torch; done in numpy, the offline pipeline needs no torch at all when a model
file carries these constants, and a short ``icephase classify`` no longer pays torch's import (1-2 s).
One network call costs 1.9-3.0x less than the frozen TorchScript module's ``forward_pairs`` on GCIceNet
frames (docs/validation.md, "sixth session"), and eps agrees with it to ~1e-5 A: both are float32, and each
one's edge basis differs from a float64 evaluation by ~2e-6 (tests/test_denoiser_kernel.py and
tests/test_compact_denoiser.py pin the two together).

This is the same network as ``CompactDenoiser`` (compact_denoiser.py), from the constants it stores
(``compact_denoiser.to_arrays``): each step below names the method it mirrors. The message-sum algorithm itself
is src/compute_icephase/icephase_message_sums.h, which the LAMMPS compute's CPU layers
(icephase_compact_layers.cpp, the same network with libtorch's matrix products) use too.

One step differs in how, not what: each layer's radial weights, a function of the edge's length alone, are
interpolated in a table of that function (:func:`radial_tables`, src/compute_icephase/icephase_radial_table.h)
instead of running the radial MLP per edge, the largest part of a layer before (docs/validation.md, "eighth
session"). The compute's CPU layers read the same tables (lammps_bridge.compact_constants).
"""

from __future__ import annotations

import threading

import numpy as np

try:
    from . import _denoiser_kernel
except ImportError:  # built without a C++ compiler: the TorchScript module runs instead
    _denoiser_kernel = None

#: each layer's arrays in a model file's compact_denoiser.npz (``layer{k}.{name}``; compact_denoiser.to_arrays
#: writes them): CompactLayer's constants of the same names
LAYER_ARRAYS = ("radial_in", "radial_out", "lin_s", "lin_v", "self_s", "self_v", "self_bias", "mix_s", "mix_v")


#: points of each layer's radial table (:func:`radial_tables`): the cubic between them is within ~3e-7 of the
#: exact radial network on the shipped denoisers' weights (up to ~2.6), 15-30x closer than the network's own
#: float32 evaluation (5e-6-9e-6); 256 points would be as close as float32, 128 ten times further. 512 rows of
#: 4F = 128 floats are 256 kB per layer, which a core's L2 cache holds.
RADIAL_TABLE_POINTS = 512


def available() -> bool:
    """Whether the compiled kernel was built with this installation."""
    return _denoiser_kernel is not None


def _silu(z: np.ndarray) -> np.ndarray:
    return z / (1.0 + np.exp(-z))  # the dtype of z


def radial_basis(lengths: np.ndarray, bessel: np.ndarray, r_max: float, cutoff_power: float) -> np.ndarray:
    """CompactDenoiser.edge_terms' radial part: each length's Bessel basis times the polynomial cutoff (E, B),
    in the dtype of ``lengths``."""
    x = lengths[:, None] / r_max
    p = cutoff_power
    envelope = (1.0 - (p + 1.0) * (p + 2.0) / 2.0 * x**p + p * (p + 2.0) * x ** (p + 1.0)
                - p * (p + 1.0) / 2.0 * x ** (p + 2.0)) * (x < 1.0)
    return np.sinc(x * bessel) * bessel * envelope


def radial_tables(arrays: "dict[str, np.ndarray]", points: int = RADIAL_TABLE_POINTS) -> "dict[str, np.ndarray]":
    """Each layer's radial weights tabulated against the edge length: ``layer{k}.radial_table`` (points, 2F or
    4F), float32, from a compact denoiser's constants (``compact_denoiser.to_arrays``).

    Row i holds CompactLayer.radial_weights (the radial MLP on the basis) at length (i - 1) h, h = r_max /
    (points - 3), evaluated in float64: row 1 is length 0 and row points - 2 is r_max, with one row beyond
    each end so that the cubic through the four nearest rows (icephase_radial_table.h, which defines the
    same grid) covers every length in [0, r_max]. Row 0 takes the weights at +h: its only use is between
    lengths 0 and h, closer than any two oxygens come (phases.MIN_OXYGEN_DISTANCE)."""
    r_max = float(arrays["r_max"])
    lengths = np.abs((np.arange(points) - 1.0) * (r_max / (points - 3)))
    basis = radial_basis(lengths, np.asarray(arrays["bessel"], dtype=np.float64), r_max,
                         float(arrays["cutoff_power"]))
    tables = {}
    k = 0
    while f"layer{k}.radial_in" in arrays:
        hidden = basis @ np.asarray(arrays[f"layer{k}.radial_in"], dtype=np.float64)
        weights = _silu(hidden) @ np.asarray(arrays[f"layer{k}.radial_out"], dtype=np.float64)
        tables[f"layer{k}.radial_table"] = np.ascontiguousarray(weights, dtype=np.float32)
        k += 1
    return tables


class KernelDenoiser:
    """eps(r) of a compact denoiser, numpy in and out: ``denoise()`` hands it float32 positions (N, 3), int64 edges
    (2, E) and float32 shifts (E, 3) and gets eps (N, 3), Angstrom, as from the TorchScript module's ``forward``
    (every directed edge) and ``forward_pairs`` (each pair once)."""

    #: denoise() passes numpy arrays to a model with this flag (and needs no torch for it)
    takes_numpy = True

    def __init__(self, arrays: "dict[str, np.ndarray]", tabulated: bool = True):
        """``tabulated``: each layer's radial weights from its table (:func:`radial_tables`); False runs the
        radial MLP on every edge's basis instead, as before the tables (a reference for tests and benchmarks)."""
        if _denoiser_kernel is None:
            raise RuntimeError("icephase_lmp._denoiser_kernel was not built (no C++ compiler at install)")
        f32 = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        f32.update(radial_tables(arrays))
        self.readout = f32["readout"] * np.float32(arrays["output_scale"])  # (4F, 3)
        self.r_max = float(arrays["r_max"])
        self.tabulated = tabulated
        self.bessel = f32["bessel"]  # (1, B): the basis, for tabulated=False
        self.cutoff_power = float(arrays["cutoff_power"])
        self.layers = []
        while f"layer{len(self.layers)}.radial_in" in arrays:
            k = len(self.layers)
            layer = {name: f32[f"layer{k}.{name}"] for name in LAYER_ARRAYS + ("radial_table",)}
            if not tabulated:
                layer["radial_table"] = None
            layer.update(act_scale=np.float32(arrays[f"layer{k}.act_scale"]), first=bool(arrays[f"layer{k}.first"]),
                         resnet=bool(arrays[f"layer{k}.resnet"]), features=layer["mix_v"].shape[1])
            self.layers.append(layer)
        if not self.layers:
            raise KeyError("layer0.radial_in")
        self._local = threading.local()  # per thread: its _Workspace

    def __call__(self, pos: np.ndarray, edge_index: np.ndarray, edge_shift: np.ndarray) -> np.ndarray:
        return self._eps(pos, edge_index, edge_shift, paired=False)

    def forward_pairs(self, pos: np.ndarray, pair_index: np.ndarray, pair_shift: np.ndarray) -> np.ndarray:
        return self._eps(pos, pair_index, pair_shift, paired=True)

    def _eps(self, pos: np.ndarray, edge_index: np.ndarray, edge_shift: np.ndarray, paired: bool) -> np.ndarray:
        pos = np.asarray(pos, dtype=np.float32)
        dst = np.ascontiguousarray(edge_index[0], dtype=np.int64)  # the centre, which receives the message
        src = np.ascontiguousarray(edge_index[1], dtype=np.int64)  # the neighbour, which sends it
        lengths, unit = self._edge_geometry(pos, src, dst, np.asarray(edge_shift, dtype=np.float32))
        basis = None if self.tabulated else radial_basis(lengths, self.bessel, self.r_max, self.cutoff_power)
        n, f = len(pos), self.layers[0]["features"]
        # CompactDenoiser.initial_features: none (the one species' embedding is in the first layer's weights)
        s, v = np.zeros((n, 0), np.float32), np.zeros((3 * n, 0), np.float32)
        work = self._workspace()
        for k, layer in enumerate(self.layers):
            s, v = self._layer(k, layer, s, v, lengths, basis, unit, src, dst, paired, work)
        # CompactDenoiser.eps_from_features: only the vectors contribute (readout rows [s | vx | vy | vz])
        return v.reshape(n, 3 * f) @ self.readout[f:]

    def _workspace(self) -> "_Workspace":
        """This thread's arrays for the intermediate results (a thread pool may share one model)."""
        work = getattr(self._local, "work", None)
        if work is None:
            work = self._local.work = _Workspace()
        return work

    @staticmethod
    def _edge_geometry(pos, src, dst, shift) -> tuple[np.ndarray, np.ndarray]:
        """CompactDenoiser.edge_terms' geometry: each edge's length (E,) and unit vector (E, 3)."""
        vec = pos[src] - pos[dst] + shift
        length = np.sqrt(np.einsum("ij,ij->i", vec, vec))
        vec /= length[:, None]
        return length, vec

    def _layer(self, k: int, layer: dict, s: np.ndarray, v: np.ndarray, lengths, basis, unit, src, dst, paired: bool,
               work: "_Workspace") -> tuple[np.ndarray, np.ndarray]:
        """CompactLayer.forward, with CompactLayer.radial_weights (from the table, or the MLP on the edges'
        ``basis`` where that is given), neighbour_features and update.

        Node features come and go as scalars s (N, F) and vectors v (3N, F) (rows node by node, x, y, z), the
        shapes of the node-wise linear maps. Every array of a layer is a view of the workspace's array of
        its name, shared by all layers, but for the two that hold the layer's output (``gate_s``, ``gate_v``),
        which alternate between two arrays (``k % 2``) so that a layer never writes over its own input."""
        n, f, first = len(s), layer["features"], layer["first"]
        width_s = f if first else 2 * f
        if first:  # every node holds the same embedding: the kernel reads no neighbour features
            hs = hv = np.zeros((0, f), np.float32)
        else:
            hs = np.matmul(s, layer["lin_s"], out=work.get("hs", n, f))
            hv = np.matmul(v, layer["lin_v"], out=work.get("hv", 3 * n, f))
        summed_s, summed_v = work.get("summed_s", n, width_s), work.get("summed_v", 3 * n, width_s)
        if basis is None and not first:
            # the weights interpolated where each message needs them, none stored: at ~1,000 oxygens as fast as
            # storing them first, and cheaper per oxygen from ~10,000 on, where the stored (E, 4F) array no
            # longer stays in cache (docs/validation.md, "ninth session")
            _denoiser_kernel.tabulated_message_sums(layer["radial_table"], lengths, self.r_max, hs, hv, unit, src,
                                                    dst, n, f, first, paired, summed_s, summed_v)
        else:
            if basis is not None:
                w = np.ascontiguousarray(_silu(basis @ layer["radial_in"]) @ layer["radial_out"])
            else:  # the first layer's weights (2F) are half as many, its messages cheap: stored, each computed once
                w = work.get("w", len(lengths), layer["radial_table"].shape[1])
                _denoiser_kernel.radial_weights(layer["radial_table"], lengths, self.r_max, w)
            _denoiser_kernel.message_sums(w, hs, hv, unit, src, dst, n, f, first, paired, summed_s, summed_v)
        # F scalars, then F gates
        gate_s = np.matmul(summed_s, layer["mix_s"], out=work.get(f"gate_s{k % 2}", n, 2 * f))
        gate_v = np.matmul(summed_v, layer["mix_v"], out=work.get(f"gate_v{k % 2}", 3 * n, f))
        if first:
            gate_s += layer["self_bias"]
        else:
            gate_s += np.matmul(s, layer["self_s"], out=work.get("self_s", n, 2 * f))
            gate_v += np.matmul(v, layer["self_v"], out=work.get("self_v", 3 * n, f))
        # the gate, in place: act = SiLU(gate_s) * act_scale
        scratch = np.negative(gate_s, out=work.get("scratch", n, 2 * f))
        np.exp(scratch, out=scratch)
        scratch += 1.0
        gate_s /= scratch
        gate_s *= layer["act_scale"]
        gated = gate_v.reshape(n, 3, f)
        gated *= gate_s[:, None, f:]
        new_s = gate_s[:, :f]
        if layer["resnet"] and not first:  # (the first layer's input is zeros: CompactDenoiser.initial_features)
            new_s += s
            gate_v += v
        return new_s, gate_v


class _Workspace:
    """Float32 arrays by name, kept from call to call and grown when a call needs more: the denoiser's
    intermediate arrays (megabytes per layer at ~1000 oxygens) were otherwise allocated afresh in every layer
    of every iteration, and each fresh allocation of that size comes from the operating system as new pages,
    every one of them faulted in on first touch (~1,800 page faults per network call at 1,024 oxygens,
    docs/validation.md, "eighth session"). The arrays stay allocated with the model, sized for the largest
    frame yet: by the arrays' sizes (not measured) 4.5-6 kB per oxygen, of which the first layer's radial
    weights (1.4-2.3 kB; the other layers' are not stored since the ninth session, 2.9-4.6 kB more before)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A C-contiguous (rows, cols) float32 view of the array ``name``, its contents undefined."""
        size = rows * cols
        array = self.arrays.get(name)
        if array is None or array.size < size:
            # room for a slightly larger frame or edge list (the list changes between iterations)
            array = self.arrays[name] = np.empty(size + size // 8 + 64, dtype=np.float32)
        return array[:size].reshape(rows, cols)
