"""The compact denoiser on CPU with its message sums compiled (``_denoiser_kernel.cpp``), for the offline pipeline.

Why. In TorchScript a layer of the compact denoiser builds each edge's messages as (E, 8F) arrays one
elementwise product at a time and sums them onto the centres with ``index_add_``; with ~10 edges per oxygen
those passes through memory were most of a layer. The kernel adds each edge's messages straight into its
centre's row in one pass. The radial network, the linear maps and the gated update stay torch operations.
On GCIceNet frames one denoising iteration costs 1.6-1.7x less than the frozen TorchScript module's
``forward_pairs`` (docs/validation.md, "sixth session"), and eps agrees with it to ~1e-6 A (another order of
the same float32 sum; tests/test_denoiser_kernel.py).

The LAMMPS compute keeps the TorchScript module (libtorch runs it, on CPU or CUDA); both give the same labels
within the float32 rounding that already separates them (another neighbour order, an open cloud).
:class:`KernelDenoiser` has the TorchScript module's call contract, so ``denoise()`` takes either.
"""

from __future__ import annotations

import torch

from .compact_denoiser import CompactDenoiser, CompactLayer, from_arrays

try:
    from . import _denoiser_kernel
except ImportError:  # built without a C++ compiler: the TorchScript module runs alone
    _denoiser_kernel = None


def available() -> bool:
    """Whether the compiled kernel was built with this installation."""
    return _denoiser_kernel is not None


class KernelDenoiser:
    """eps(r) of a compact denoiser with compiled message sums: ``forward`` / ``forward_pairs`` as the module's."""

    def __init__(self, module: CompactDenoiser):
        if _denoiser_kernel is None:
            raise RuntimeError("icephase_lmp._denoiser_kernel was not built (no C++ compiler at install)")
        self.module = module.eval()

    @classmethod
    def from_arrays(cls, arrays: "dict[str, torch.Tensor]") -> "KernelDenoiser":
        return cls(from_arrays(arrays))

    def __call__(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
        return self._eps(pos, edge_index, edge_shift, paired=False)

    def forward_pairs(self, pos: torch.Tensor, pair_index: torch.Tensor, pair_shift: torch.Tensor) -> torch.Tensor:
        return self._eps(pos, pair_index, pair_shift, paired=True)

    def _eps(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor, paired: bool
             ) -> torch.Tensor:
        m = self.module
        with torch.no_grad():
            pos = pos.to("cpu", torch.float32)
            radial, unit = m.edge_terms(pos, edge_index, edge_shift.to(torch.float32))
            unit_np = unit.contiguous().numpy()
            src, dst = edge_index[1].contiguous().numpy(), edge_index[0].contiguous().numpy()
            features = m.initial_features(pos.shape[0], pos)
            for layer in m.layers:
                features = _layer(layer, features, radial, unit_np, src, dst, paired)
            return m.eps_from_features(features)


def _layer(layer: CompactLayer, x: torch.Tensor, radial: torch.Tensor, unit, src, dst, paired: bool) -> torch.Tensor:
    """CompactLayer.forward with the messages summed by the kernel."""
    w = layer.radial_weights(radial).contiguous().numpy()
    # the first layer's messages need no neighbour features (every node holds the same embedding): the kernel
    # does not read hx there
    hx = w[:0] if layer.first else layer.neighbour_features(x).numpy()
    summed = _denoiser_kernel.message_sums(w, hx, unit, src, dst, x.shape[0], layer.features, layer.first, paired)
    return layer.update(torch.from_numpy(summed), x)
