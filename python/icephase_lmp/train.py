"""Training the denoiser on ideal references only (the paper's Algorithm 1).

Each step draws ``batch_size`` reference supercells, scales each isotropically by a random factor (MD
densities differ from GenIce2's by a few percent), adds Gaussian noise with sigma ~ U(0, sigma_max) per
sample, and regresses the noise. The target noise has its per-sample mean removed: a translation-invariant
network cannot predict a rigid shift, so that part of the noise is unlearnable and only adds variance.

A run directory holds everything: ``config.json``, ``loss.csv``, ``loss.png``, ``checkpoint.pt`` (resumable,
loaded with ``weights_only=True``: no pickle) and the final ``denoiser.pt`` (TorchScript).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .geometry import neighbor_edges
from .configs import DenoiserConfig, TrainConfig
from .errors import TrainingError
from .denoiser_network import Denoiser, build_denoiser, check_device, prepare_torch, script_denoiser
from .references import Reference, load_references, supercell

#: the state entry in which nequip's EdgeLengthNormalizer keeps 1 / r_max (a constant, not a weight)
_RMAX_CONSTANT = "._rmax_recip"


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when torch has it, else the CPU; any other name is checked (:class:`DeviceError`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(name)
    return torch.device(name)


def noisy_batch(
    cells: list[Reference], config: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, int]]]:
    """One training batch: concatenated noisy positions, edges, edge shifts and mean-removed targets, and
    each sample's (cell, number of atoms), to rebuild the edges after a denoising step."""
    positions, targets, samples = [], [], []
    probabilities = sampling_probabilities(config.reference_weights, [c.name for c in cells])
    for _ in range(config.batch_size):
        # equal shares draw as before the weights existed, so earlier runs' seeds give the same batches
        ref = cells[rng.integers(len(cells)) if probabilities is None else rng.choice(len(cells), p=probabilities)]
        scale = 1.0 + rng.uniform(-config.scale_jitter, config.scale_jitter)
        cell = ref.atoms.cell.array * scale
        clean = ref.atoms.positions * scale
        sigma = rng.uniform(0.0, config.sigma_max)
        delta = sigma * rng.standard_normal(clean.shape)
        noisy = clean + delta
        positions.append(noisy)
        targets.append(delta - delta.mean(axis=0))
        samples.append((cell, len(noisy)))
    pos = np.concatenate(positions)
    edges, shifts = batch_edges(pos, samples, config.model.r_max)
    return pos, edges, shifts, np.concatenate(targets), samples


def sampling_probabilities(weights: dict[str, float], names: list[str]) -> np.ndarray | None:
    """Each reference's chance to be drawn for a sample, from the relative weights by label (a reference
    not named weighs 1); None when no weight is given (all alike)."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise TrainingError(f"reference weights for {unknown}, which are not references of this run {names}")
    w = np.array([weights.get(name, 1.0) for name in names], dtype=np.float64)
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise TrainingError(f"reference weights must be positive numbers, got {weights}")
    return w / w.sum()


def batch_edges(positions: np.ndarray, samples: list[tuple[np.ndarray, int]], r_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Edges and shifts of a batch of periodic samples (``samples`` as from :func:`noisy_batch`)."""
    edges, shifts = [], []
    offset = 0
    for cell, n in samples:
        ei, sh = neighbor_edges(positions[offset:offset + n], cell, (True, True, True), r_max)
        edges.append(ei + offset)
        shifts.append(sh)
        offset += n
    return np.concatenate(edges, axis=1), np.concatenate(shifts)


def unrolled_loss(model: torch.nn.Module, pos: np.ndarray, ei: np.ndarray, sh: np.ndarray, target: np.ndarray,
                  samples: list[tuple[np.ndarray, int]], steps: int, r_max: float, device: torch.device,
                  last_only: bool = False) -> torch.Tensor:
    """Mean over ``steps`` chained denoising steps of the squared noise left after each step (A^2 per atom),
    or, with ``last_only``, the noise left after the last step alone.

    With one step this is the paper's loss ||delta - eps(r + delta)||^2. Later steps see the positions the
    earlier ones left (gradients flow through them); their edges are rebuilt, as at inference."""
    x = torch.tensor(pos, dtype=torch.float32, device=device)
    target_t = torch.tensor(target, dtype=torch.float32, device=device)
    moved = torch.zeros_like(target_t)
    loss = torch.zeros((), device=device)
    for k in range(steps):
        if k > 0:
            ei, sh = batch_edges(x.detach().cpu().numpy().astype(np.float64), samples, r_max)
        pred = model(x, torch.tensor(ei, device=device), torch.tensor(sh, dtype=torch.float32, device=device))
        moved = moved + pred
        x = x - pred
        if not last_only or k == steps - 1:
            loss = loss + (moved - target_t).square().sum(dim=1).mean()
    return loss if last_only else loss / steps


def _lr_at(step: int, config: TrainConfig) -> float:
    progress = min(step / max(config.steps, 1), 1.0)
    floor = config.lr_final_fraction
    return config.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(
    config: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
    stop_after: int | None = None,
) -> Path | None:
    """Train (or resume) a denoiser into ``run_dir``; returns the path of the TorchScript ``denoiser.pt``.

    ``stop_after`` ends this session after that many steps with a checkpoint (for time-boxed sessions;
    continue with ``resume=True``); it returns None then, as the model is not finished.
    """
    if config.unroll < 1 or config.unroll_loss not in ("mean", "last"):
        raise TrainingError(f"unroll must be >= 1 and unroll_loss 'mean' or 'last', got {config.unroll} and "
                            f"{config.unroll_loss!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)

    refs = load_references(config.references)
    cells = [Reference(r.name, supercell(r.atoms, config.min_cell_width), r.source) for r in refs]
    sampling_probabilities(config.reference_weights, [c.name for c in cells])  # a bad weight fails before training

    prepare_torch()  # before seeding: nequip's first-time set-up reseeds torch
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.init_from:
        model = initial_denoiser(config.init_from, config).to(device)
    else:
        model = build_denoiser(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    if resume and ckpt_path.exists():
        state = read_checkpoint(ckpt_path, device)
        saved = TrainConfig.from_dict(read_run_config(run_dir))
        if asdict(saved) != asdict(config):
            raise TrainingError(f"cannot resume {run_dir}: its config.json differs from the config given now")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
    else:
        (run_dir / "config.json").write_text(config.to_json())
        (run_dir / "loss.csv").write_text("step,loss,rms_target,lr,seconds\n")

    def save_checkpoint(step: int) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "numpy_rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "step": step,
        }
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(ckpt_path)  # atomic: a crash mid-save never leaves a broken checkpoint

    t0 = time.time()
    model.train()
    with open(run_dir / "loss.csv", "a") as log:
        end = config.steps if stop_after is None else min(config.steps, start + stop_after)
        bar = tqdm(range(start, end), initial=start, total=config.steps, disable=not progress, desc="train")
        for step in bar:
            lr = _lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            pos, ei, sh, target, samples = noisy_batch(cells, config, rng)
            loss = unrolled_loss(model, pos, ei, sh, target, samples, config.unroll, config.model.r_max, device,
                                 last_only=config.unroll_loss == "last")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(f"training loss became {value} at step {step}: lower --lr")
            rms_target = float(np.sqrt((target**2).sum(axis=1).mean()))
            log.write(f"{step + 1},{value:.6g},{rms_target:.6g},{lr:.4g},{time.time() - t0:.1f}\n")
            if (step + 1) % 50 == 0:
                log.flush()
                bar.set_postfix(loss=f"{value:.4f}")
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
                save_checkpoint(step + 1)
    if end < config.steps:
        return None
    plot_loss(run_dir / "loss.csv", run_dir / "loss.png")
    out = run_dir / "denoiser.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(script_denoiser(model.to("cpu")), str(out))
    return out


def initial_denoiser(model_file: str | Path, config: TrainConfig) -> Denoiser:
    """A trainable copy of the denoiser of a model file or of a training run folder, to fine-tune
    (``config.model`` must be its architecture)."""
    from .model_file import load_model

    found = source_architecture(model_file)
    # a new graph cutoff is the one change that keeps every weight's shape (fine-tuning then adapts the radial
    # functions); any other difference is a different network
    if found is not None and replace(found, r_max=config.model.r_max) != config.model:
        raise TrainingError(f"{model_file}: its denoiser is {asdict(found)}, not the configured "
                            f"{asdict(config.model)}; pass the same architecture to fine-tune it")
    if Path(model_file).is_dir():
        state = load_trained(model_file)[0].state_dict()
    else:
        source = load_model(model_file)
        # the stored weights (or, in a file from before denoisers were frozen, the scripted copy's state) also
        # hold constants that eager modules keep as plain attributes (normalisation constants): every
        # trainable weight must be found, extra entries are those constants
        state = {k: torch.from_numpy(v) for k, v in source.network_weights().items()}
    model = build_denoiser(config.model)
    # the cutoff lives in the state as a constant (1 / r_max): the new network keeps its own
    state = {k: v for k, v in state.items() if not k.endswith(_RMAX_CONSTANT)}
    missing = model.load_state_dict(state, strict=False).missing_keys
    missing = [k for k in missing if not k.endswith(_RMAX_CONSTANT)]
    if missing:
        raise TrainingError(f"{model_file}: its denoiser lacks weights {missing[:3]}...; it is not this architecture")
    return model


def source_architecture(source: str | Path) -> DenoiserConfig | None:
    """The denoiser architecture of a training run folder or a model file (None: the file does not say)."""
    if Path(source).is_dir():
        return DenoiserConfig(**read_run_config(source)["model"])
    from .model_file import read_metadata

    saved = read_metadata(source).get("denoiser")
    return DenoiserConfig(**saved) if saved else None


def read_run_config(run_dir: str | Path) -> dict:
    """A run folder's ``config.json``; one that is not JSON is a :class:`TrainingError` that names it."""
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{path} is damaged ({exc}): it is not the config.json `icephase train` wrote") from exc


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """A run's ``checkpoint.pt`` (``weights_only``: no pickled code runs). torch reports a damaged file as
    any of several exception types (RuntimeError, UnpicklingError, KeyError, EOFError, ...); they become one
    :class:`TrainingError` that names the file."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{path} is damaged or not an icephase checkpoint ({exc}); train again") from exc


def load_trained(run_dir: str | Path) -> tuple[Denoiser, TrainConfig]:
    """The eager model and config of a (finished or partial) run, from its checkpoint."""
    run_dir = Path(run_dir)
    config = TrainConfig.from_dict(read_run_config(run_dir))
    model = build_denoiser(config.model)
    state = read_checkpoint(run_dir / "checkpoint.pt")
    model.load_state_dict(state["model"])
    return model.eval(), config


def plot_loss(csv_path: Path, png_path: Path) -> None:
    """Loss curve (log scale) with a running mean, next to the target's own scale for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.genfromtxt(csv_path, delimiter=",", names=True)
    data = np.atleast_1d(data)
    if data.size == 0:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(data["step"], data["loss"], lw=0.5, alpha=0.4, label="loss per step")
    window = max(1, min(200, data.size // 10))
    smooth = np.convolve(data["loss"], np.ones(window) / window, mode="valid")
    ax.plot(data["step"][window - 1 :], smooth, lw=1.5, label=f"running mean ({window} steps)")
    ax.plot(data["step"], data["rms_target"] ** 2, lw=0.5, alpha=0.3, label="mean |target|^2 (predict-zero loss)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (A^2 per atom)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
