"""Settings of the denoiser and of its training, as plain dataclasses.

Kept apart from ``model`` and ``train`` so that reading them (the command line's defaults, a run's
config.json) does not import torch, which takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of the denoiser. Defaults are justified in docs/validation.md (accuracy vs. speed)."""

    r_max: float = 4.5
    num_layers: int = 3
    l_max: int = 1
    num_features: int = 32
    num_bessels: int = 8
    radial_mlp_width: int = 32
    radial_mlp_depth: int = 1
    #: typical number of O neighbours within r_max (ideal Ih ~6 at 4.5 A, liquid ~13, ice VII ~23):
    #: only normalises the message sums.
    avg_num_neighbors: float = 12.0
    #: keep odd-parity scalars and even-parity vectors (pseudo-scalars, cross products) in the hidden
    #: features; without them the network cannot sense handedness, and chiral ice III (P4_1 2_1 2) fails.
    all_parities: bool = False
    #: the network's raw output is multiplied by this, so a freshly initialised net predicts ~this scale (A).
    output_scale: float = 0.1

    @property
    def receptive_field(self) -> float:
        """How far (A) information travels in one denoising step: num_layers * r_max."""
        return self.num_layers * self.r_max

    def to_dict(self) -> dict:
        """The architecture as stored in a model file's metadata (``denoiser``)."""
        return asdict(self)



@dataclass
class TrainConfig:
    """A training run's settings (lengths in Angstrom), saved as its ``config.json``."""

    references: list[str] = field(default_factory=list)  # empty: the seven built-in phases
    #: relative sampling weight of references by label (a reference not named weighs 1; empty: all alike).
    #: A phase the denoiser leaves far from its lattice after training on equal shares (ice XII among
    #: eleven phases: docs/validation.md) gets more of the batches; the others stay in every batch's draw.
    reference_weights: dict[str, float] = field(default_factory=dict)
    model: DenoiserConfig = field(default_factory=DenoiserConfig)
    steps: int = 20000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-2
    #: cosine decay of the learning rate to lr * lr_final_fraction over the run (1.0 = constant).
    lr_final_fraction: float = 0.1
    sigma_max: float = 0.35
    #: isotropic length scaling drawn from U(1 - s, 1 + s): +-5% in length is +-15% in density.
    scale_jitter: float = 0.05
    #: reference supercells are at least this wide (A); twice r_max plus a margin keeps images distinct.
    min_cell_width: float = 12.0
    seed: int = 0
    #: denoising steps chained in each training sample. The loss averages the noise left after each of
    #: them, so the network learns to land on the lattice in that many steps (1: the paper's one-step
    #: loss; the LAMMPS compute then pays fewer iterations per call).
    unroll: int = 1
    #: which steps of an unrolled sample the loss counts: "mean" (every step alike) or "last" (only the
    #: noise left after the last one, i.e. only what inference with ``unroll`` iterations keeps; the
    #: first step, whose loss is the largest, then no longer dominates the gradient)
    unroll_loss: str = "mean"
    #: start from the denoiser of this model file or training run folder (fine-tuning; its architecture
    #: replaces ``model``)
    init_from: str = ""
    checkpoint_every: int = 500
    device: str = "auto"
    threads: int = 0  # 0: leave torch's default

    def to_json(self) -> str:
        """The ``config.json`` text."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Read what :meth:`to_json` wrote (parsed)."""
        data = dict(data)
        data["model"] = DenoiserConfig(**data.get("model", {}))
        return cls(**data)
