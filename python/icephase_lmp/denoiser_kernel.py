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
"""

from __future__ import annotations

import numpy as np

try:
    from . import _denoiser_kernel
except ImportError:  # built without a C++ compiler: the TorchScript module runs instead
    _denoiser_kernel = None

#: each layer's arrays in a model file's compact_denoiser.npz (``layer{k}.{name}``; compact_denoiser.to_arrays
#: writes them): CompactLayer's constants of the same names
LAYER_ARRAYS = ("radial_in", "radial_out", "lin_s", "lin_v", "self_s", "self_v", "self_bias", "mix_s", "mix_v")


def available() -> bool:
    """Whether the compiled kernel was built with this installation."""
    return _denoiser_kernel is not None


def _silu(z: np.ndarray) -> np.ndarray:
    return z / (np.float32(1.0) + np.exp(-z))


class KernelDenoiser:
    """eps(r) of a compact denoiser, numpy in and out: ``denoise()`` hands it float32 positions (N, 3), int64 edges
    (2, E) and float32 shifts (E, 3) and gets eps (N, 3), Angstrom, as from the TorchScript module's ``forward``
    (every directed edge) and ``forward_pairs`` (each pair once)."""

    #: denoise() passes numpy arrays to a model with this flag (and needs no torch for it)
    takes_numpy = True

    def __init__(self, arrays: "dict[str, np.ndarray]"):
        if _denoiser_kernel is None:
            raise RuntimeError("icephase_lmp._denoiser_kernel was not built (no C++ compiler at install)")
        f32 = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        self.bessel = f32["bessel"]  # (1, B)
        self.readout = f32["readout"] * np.float32(arrays["output_scale"])  # (4F, 3)
        self.r_max = float(arrays["r_max"])
        self.cutoff_power = float(arrays["cutoff_power"])
        self.layers = []
        while f"layer{len(self.layers)}.radial_in" in arrays:
            k = len(self.layers)
            layer = {name: f32[f"layer{k}.{name}"] for name in LAYER_ARRAYS}
            layer.update(act_scale=np.float32(arrays[f"layer{k}.act_scale"]), first=bool(arrays[f"layer{k}.first"]),
                         resnet=bool(arrays[f"layer{k}.resnet"]), features=layer["mix_v"].shape[1])
            self.layers.append(layer)
        if not self.layers:
            raise KeyError("layer0.radial_in")

    def __call__(self, pos: np.ndarray, edge_index: np.ndarray, edge_shift: np.ndarray) -> np.ndarray:
        return self._eps(pos, edge_index, edge_shift, paired=False)

    def forward_pairs(self, pos: np.ndarray, pair_index: np.ndarray, pair_shift: np.ndarray) -> np.ndarray:
        return self._eps(pos, pair_index, pair_shift, paired=True)

    def _eps(self, pos: np.ndarray, edge_index: np.ndarray, edge_shift: np.ndarray, paired: bool) -> np.ndarray:
        pos = np.asarray(pos, dtype=np.float32)
        dst = np.ascontiguousarray(edge_index[0], dtype=np.int64)  # the centre, which receives the message
        src = np.ascontiguousarray(edge_index[1], dtype=np.int64)  # the neighbour, which sends it
        radial, unit = self._edge_terms(pos, src, dst, np.asarray(edge_shift, dtype=np.float32))
        x = np.zeros((len(pos), 1), dtype=np.float32)  # CompactDenoiser.initial_features
        for layer in self.layers:
            x = self._layer(layer, x, radial, unit, src, dst, paired)
        return x @ self.readout  # CompactDenoiser.eps_from_features

    def _edge_terms(self, pos, src, dst, shift) -> tuple[np.ndarray, np.ndarray]:
        """CompactDenoiser.edge_terms: each edge's Bessel basis times the polynomial cutoff, and unit vector."""
        vec = pos[src] - pos[dst] + shift
        length = np.sqrt(np.einsum("ij,ij->i", vec, vec))[:, None]
        unit = np.ascontiguousarray(vec / length)
        x = length / np.float32(self.r_max)
        p = self.cutoff_power
        envelope = ((1.0 - (p + 1.0) * (p + 2.0) / 2.0 * x**p + p * (p + 2.0) * x ** (p + 1.0)
                     - p * (p + 1.0) / 2.0 * x ** (p + 2.0)) * (x < 1.0)).astype(np.float32)
        return np.sinc(x * self.bessel) * self.bessel * envelope, unit

    @staticmethod
    def _layer(layer: dict, x: np.ndarray, radial, unit, src, dst, paired: bool) -> np.ndarray:
        """CompactLayer.forward, with CompactLayer.radial_weights, neighbour_features and update."""
        n, f, first = len(x), layer["features"], layer["first"]
        w = np.ascontiguousarray(_silu(radial @ layer["radial_in"]) @ layer["radial_out"])
        if first:  # every node holds the same embedding: the kernel reads no neighbour features
            hx = w[:0]
        else:
            hx = np.concatenate([x[:, :f] @ layer["lin_s"],
                                 (x[:, f:].reshape(3 * n, f) @ layer["lin_v"]).reshape(n, 3 * f)], axis=1)
        summed = _denoiser_kernel.message_sums(w, hx, unit, src, dst, n, f, first, paired)
        width_s = f if first else 2 * f
        gate_s = summed[:, :width_s] @ layer["mix_s"]
        gate_v = summed[:, width_s:].reshape(3 * n, width_s) @ layer["mix_v"]
        if first:
            gate_s += layer["self_bias"]
        else:
            gate_s += x[:, :f] @ layer["self_s"]
            gate_v += x[:, f:].reshape(3 * n, f) @ layer["self_v"]
        act = _silu(gate_s) * layer["act_scale"]
        gated = gate_v.reshape(n, 3, f) * act[:, None, f:]
        out = np.concatenate([act[:, :f], gated.reshape(n, 3 * f)], axis=1)
        return x + out if layer["resnet"] else out
