"""The denoiser network eps(r): an E(3)-equivariant NequIP network, one displacement vector per oxygen.

Built from nequip 0.19 building blocks. The exported module has one plain signature that both the Python
pipeline and the LAMMPS plugin call:

    forward(pos: [N, 3] float32, edge_index: [2, E] int64, edge_shift: [E, 3] float32) -> [N, 3] float32

Edge ``e`` points from centre ``edge_index[0, e]`` to neighbour ``edge_index[1, e]``; its vector is
``pos[j] - pos[i] + edge_shift[e]``. Offline, ``edge_shift`` holds the periodic image offsets (Cartesian,
Angstrom); in LAMMPS the neighbour is a ghost atom at its image position, so the shift is zero.
Every edge with length below ``r_max`` must be present (both directions).
"""


import warnings
from typing import Dict

import numpy as np
import torch

from .configs import DenoiserConfig  # noqa: F401  (defined without torch, for the CLI)
from .errors import DeviceError, ModelFileError

#: Key under which the network writes its per-atom output in nequip's data dict.
_OUT_FIELD = "denoise_eps"


class Denoiser(torch.nn.Module):
    """eps(r) with the plain (pos, edge_index, edge_shift) signature documented in the module docstring."""

    out_field: str
    output_scale: float

    def __init__(self, net: torch.nn.Module, output_scale: float):
        super().__init__()
        self.net = net
        self.out_field = _OUT_FIELD
        self.output_scale = output_scale

    def forward(self, pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
        """eps: pos (N, 3), edge_index (2, E), edge_shift (E, 3), Angstrom -> (N, 3), Angstrom."""
        vec = torch.index_select(pos, 0, edge_index[1]) - torch.index_select(pos, 0, edge_index[0]) + edge_shift
        data: Dict[str, torch.Tensor] = {
            "pos": pos,
            "edge_index": edge_index,
            # nequip uses precomputed edge vectors when present, so no cell is needed here.
            "edge_vectors": vec,
            "atom_types": torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device),
        }
        out = self.net(data)
        return out[self.out_field] * self.output_scale


#: What the offline tools and the LAMMPS compute (compute_icephase.cpp, the same words) say when CUDA is
#: asked for and torch has none.
CUDA_UNAVAILABLE = (
    "device cuda requested, but libtorch finds no usable CUDA device (a CPU-only torch build, or no GPU visible)"
)


def check_device(device: str | torch.device) -> None:
    """Stop with a clear message when a CUDA device is asked for and torch has none."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{CUDA_UNAVAILABLE}: use --device cpu")


def prepare_torch() -> None:
    """nequip's one-time global set-up. Call it BEFORE seeding torch: on its first call it reseeds torch
    (seed 123) and switches the default dtype to float64, which we switch back to float32."""
    from nequip.utils.global_state import set_global_state

    set_global_state()
    torch.set_default_dtype(torch.float32)


def build_denoiser(config: DenoiserConfig) -> Denoiser:
    """A freshly initialised float32 denoiser (call prepare_torch(), then seed torch, for reproducibility)."""
    from e3nn.o3 import Irreps
    from nequip.nn import AtomwiseLinear, ConvNetLayer, SequentialGraphNetwork
    from nequip.nn.embedding import (
        BesselEdgeLengthEncoding,
        EdgeLengthNormalizer,
        NodeTypeEmbed,
        PolynomialCutoff,
        SphericalHarmonicEdgeAttrs,
    )
    prepare_torch()
    type_names = ["O"]
    hidden = Irreps([(config.num_features, (l, p)) for l in range(config.l_max + 1) for p in (1, -1)])
    if not config.all_parities:
        hidden = Irreps([(mul, ir) for mul, ir in hidden if ir.p == (-1) ** ir.l])
    modules: dict[str, torch.nn.Module] = {}
    modules["type_embed"] = NodeTypeEmbed(type_names=type_names, num_features=config.num_features)
    modules["sh"] = SphericalHarmonicEdgeAttrs(irreps_edge_sh=config.l_max, irreps_in=modules["type_embed"].irreps_out)
    modules["norm_len"] = EdgeLengthNormalizer(r_max=config.r_max, type_names=type_names, irreps_in=modules["sh"].irreps_out)
    modules["radial"] = BesselEdgeLengthEncoding(
        cutoff=PolynomialCutoff(6), num_bessels=config.num_bessels, irreps_in=modules["norm_len"].irreps_out
    )
    prev = modules["radial"].irreps_out
    for layer in range(config.num_layers):
        conv = ConvNetLayer(
            irreps_in=prev,
            feature_irreps_hidden=hidden,
            convolution_kwargs={
                "radial_mlp_depth": config.radial_mlp_depth,
                "radial_mlp_width": config.radial_mlp_width,
                "avg_num_neighbors": config.avg_num_neighbors,
                "type_names": type_names,
                "is_first_layer": layer == 0,
            },
            resnet=layer > 0,
        )
        modules[f"layer{layer}"] = conv
        prev = conv.irreps_out
    modules["out"] = AtomwiseLinear(field="node_features", out_field=_OUT_FIELD, irreps_in=prev, irreps_out="1x1o")
    net = SequentialGraphNetwork(modules)
    return Denoiser(net, config.output_scale).to(torch.float32)


def denoiser_from_weights(config: DenoiserConfig, weights: "dict[str, np.ndarray]") -> Denoiser:
    """An eager denoiser of this architecture holding stored weights (a model file's ``denoiser_weights.npz``).

    The stored state also holds constants that eager modules keep as plain attributes (normalisation
    constants): every trainable weight must be found, extra entries are those constants."""
    model = build_denoiser(config)
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}
    missing = model.load_state_dict(state, strict=False).missing_keys
    if missing:
        raise ModelFileError(f"the stored denoiser weights lack {missing[:3]}...: they are not of the architecture "
                             f"{config.to_dict()}; re-export the model")
    return model.eval()


def inference_module(
    model: Denoiser, config: DenoiserConfig
) -> "tuple[torch.jit.ScriptModule, str, dict[str, np.ndarray] | None]":
    """What a model file stores for the denoiser ``model`` (eager, trained): the module, frozen; its form's
    name, "compact" (compact_denoiser.py: the same eps to float32 rounding, ~3x cheaper per call on CPU) where
    the architecture has a compact form, else "nequip" (the scripted training network); and the compact
    form's constants as arrays (``compact_denoiser.to_arrays``; None for "nequip"), which the offline pipeline
    runs with its compiled message kernel (denoiser_kernel.py)."""
    from . import compact_denoiser

    if compact_denoiser.supports(config):
        compact = compact_denoiser.from_nequip(model.eval(), config)
        arrays = {k: v.cpu().numpy() for k, v in compact_denoiser.to_arrays(compact).items()}
        module, form = torch.jit.script(compact), "compact"
        keep = list(compact_denoiser.EXPORTED_METHODS)  # freezing keeps only forward unless told
    else:
        module, form, keep, arrays = script_denoiser(model), "nequip", [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.freeze(module.eval(), preserved_attrs=keep), form, arrays


def script_denoiser(model: Denoiser) -> torch.jit.ScriptModule:
    """TorchScript-compile the denoiser (what the LAMMPS plugin loads through libtorch)."""
    from e3nn.util.jit import script
    from nequip.utils.compile import conditional_torchscript_mode

    model = model.eval()
    with conditional_torchscript_mode(True), warnings.catch_warnings():
        # torch >= 2.10 flags TorchScript as deprecated; it is still what libtorch in LAMMPS loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        return script(model)
