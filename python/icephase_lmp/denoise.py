"""Iterative denoising r <- r - eps(r) of a periodic (or open) oxygen configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import DenoiseError
from .geometry import neighbor_edges, neighbor_pairs, perpendicular_widths
# the limits live with the other distance limits, where the LAMMPS bridge reads them without importing torch
from .phases import MAX_NEIGHBOURS, MAX_STEP, RUNAWAY_STEP

if TYPE_CHECKING:  # torch takes 1-2 s to import; a numpy denoiser (denoiser_kernel.py) does not need it
    import torch

    from .denoiser_kernel import KernelDenoiser

#: torch CPU threads for TorchScript denoisers (pipeline.set_threads; 0: torch's default)
TORCH_THREADS = 0


def runaway_message(step: float, where: str) -> str:
    """What the offline pipeline (and, in its words, the LAMMPS compute) says about a runaway step."""
    what = (f"a step of {step:.4g} A (the limit is {RUNAWAY_STEP:g} A; thermal motion is a fraction of an Angstrom)"
            if np.isfinite(step) else "NaN or Inf")
    return (
        f"the denoiser returned {what} for {where}: the model file is damaged or not an icephase denoiser, "
        "or the input is far from water; check the model with `icephase inspect` and the input's oxygens"
    )


@dataclass
class DenoiseResult:
    """The denoised positions and the size of every step, as :func:`denoise` returns them."""

    positions: np.ndarray  # (N, 3) denoised positions (unwrapped: each atom moves continuously)
    #: largest displacement of any atom in each iteration (A)
    max_steps: list[float] = field(default_factory=list)
    #: root-mean-square displacement in each iteration (A)
    rms_steps: list[float] = field(default_factory=list)
    #: the positions after ``snapshot`` iterations where more followed (``denoise(snapshot=...)``), else None
    early_positions: np.ndarray | None = None

    @property
    def iterations(self) -> int:
        """Iterations done (fewer than asked for when the tolerance stopped them early)."""
        return len(self.max_steps)


def check_cell(cell: np.ndarray | None, pbc) -> None:
    """A periodic box needs three finite, independent cell vectors (a zero or flat cell has no inside to
    wrap atoms into, and no periodic images)."""
    if cell is None or not np.any(pbc):
        return
    cell = np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3) or not np.isfinite(cell).all():
        raise DenoiseError(f"the cell must be three finite box vectors as rows (a 3 x 3 array), got {cell.tolist()}")
    lengths = np.linalg.norm(cell, axis=1)
    if abs(np.linalg.det(cell)) <= 1e-9 * max(float(np.prod(lengths)), 1e-300):
        raise DenoiseError(
            f"the cell {np.round(cell, 3).tolist()} has no volume (a zero or flat box): give the three box "
            "vectors as rows, or no cell (None, pbc off) for an open cluster"
        )


def check_box(cell: np.ndarray | None, pbc, cutoff: float) -> None:
    """A periodic box narrower than twice the cutoff would let an atom see its own image as a neighbour."""
    if cell is None or not np.any(pbc):
        return
    check_cell(cell, pbc)
    widths = perpendicular_widths(cell)[np.asarray(pbc, dtype=bool)]
    if np.any(widths < cutoff):
        raise DenoiseError(
            f"the periodic box ({', '.join(f'{w:.2f}' for w in widths)} A wide) is smaller than the "
            f"model's cutoff {cutoff:.2f} A: replicate the system (e.g. `replicate 2 2 2` in LAMMPS)"
        )


def denoise(
    model: "torch.nn.Module | KernelDenoiser",
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc,
    r_max: float,
    iterations: int = 8,
    tolerance: float = 0.0,
    device: "str | torch.device" = "cpu",
    snapshot: int = 0,
) -> DenoiseResult:
    """Apply ``iterations`` denoising steps r <- r - eps(r), stopping early once the largest step is below
    ``tolerance``.

    Each step is at most ``MAX_STEP`` long (a longer one is shortened in its own direction); a step longer
    than ``RUNAWAY_STEP``, or one that is not finite, stops the run.

    Parameters
    ----------
    model : torch.nn.Module or denoiser_kernel.KernelDenoiser
        The denoiser, ``forward(pos [N, 3], edge_index [2, E], edge_shift [E, 3]) -> eps [N, 3]`` (float32,
        Angstrom; the ``model`` module's docstring gives the contract): torch tensors in and out, or numpy
        arrays for a model with ``takes_numpy`` (``IcephaseModel.offline_denoiser``).
    positions : array_like, shape (N, 3)
        Oxygen positions, Angstrom.
    cell : array_like, shape (3, 3) or None
        Cell vectors as rows, Angstrom; ``None``: an open cloud.
    pbc : tuple of 3 bool
        Periodicity along each cell vector.
    r_max : float
        The denoiser's cutoff, Angstrom: every pair closer than this is an edge.
    iterations : int, optional
        Most steps to take (0: return the input).
    tolerance : float, optional
        Stop once the largest step of an iteration is below this, Angstrom (0: never).
    device : str or torch.device, optional
        Where the denoiser runs.
    snapshot : int, optional
        Keep the positions after this many iterations as ``early_positions`` where the run goes on beyond
        them (the other-crystal step's repeat test reads them); 0: keep none.

    Returns
    -------
    DenoiseResult
        Positions (N, 3) after the last step, not wrapped back into the cell (each atom moves continuously),
        the largest and RMS step of each iteration, Angstrom, and the ``snapshot`` positions.

    Raises
    ------
    DenoiseError
        On NaN or Inf positions, ``iterations < 0``, a periodic box narrower than ``r_max``, or a denoiser
        that returns the wrong shape, a runaway step, or collapses the atoms together.
    """
    pos = np.array(positions, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise DenoiseError("positions contain NaN or Inf: the simulation has blown up or the file is corrupt")
    if iterations < 0:
        raise DenoiseError(f"iterations must be >= 0, got {iterations}")
    check_box(cell, pbc, r_max)
    result = DenoiseResult(pos)
    eps_of = _numpy_eps if getattr(model, "takes_numpy", False) else _torch_eps(device)
    # a compact denoiser (compact_denoiser.py) takes every pair of our symmetric list once and computes its
    # radial weights for both directions: the same eps to float32 rounding, ~15% cheaper
    paired = hasattr(model, "forward_pairs")
    for _ in range(iterations):
        # Memory stays bounded: the input of a pipeline has no oxygens closer than MIN_OXYGEN_DISTANCE
        # (at most ~70 neighbours each), and a configuration that passed this check cannot gain more
        # than the neighbours within r_max + 2 MAX_STEP of it by the next iteration.
        # each pair once where the model takes pairs and the box allows (neighbor_pairs), else every edge
        found = neighbor_pairs(pos, cell, pbc, r_max) if paired else None
        edge_index, shift = found if found is not None else neighbor_edges(pos, cell, pbc, r_max)
        edges = edge_index.shape[1] * (2 if found is not None else 1)
        if edges > MAX_NEIGHBOURS * len(pos):
            raise DenoiseError(
                f"the denoised oxygens have {edges / len(pos):.0f} neighbours each within "
                f"{r_max:g} A (water has at most ~25): the denoiser has collapsed them together; the model "
                "file is damaged or not an icephase denoiser"
            )
        step = eps_of(model.forward_pairs if found is not None else model, pos, edge_index, shift)
        if step.shape != pos.shape:
            raise DenoiseError(
                f"the denoiser returned shape {list(step.shape)} for {len(pos)} atoms (expected [{len(pos)}, 3]): "
                "this is not an icephase denoiser"
            )
        norms = np.linalg.norm(step, axis=1)
        bad = ~np.isfinite(norms) | (norms > RUNAWAY_STEP)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DenoiseError(runaway_message(float(norms[first]), f"oxygen {first}"))
        long = norms > MAX_STEP
        if long.any():
            step[long] *= (MAX_STEP / norms[long])[:, None]
            norms[long] = MAX_STEP
        pos = pos - step
        result.max_steps.append(float(norms.max()) if len(norms) else 0.0)
        result.rms_steps.append(float(np.sqrt((norms**2).mean())) if len(norms) else 0.0)
        if result.iterations == snapshot and snapshot < iterations:
            result.early_positions = pos.copy()
        if result.max_steps[-1] < tolerance:
            break
    result.positions = pos
    return result


def _numpy_eps(call, pos: np.ndarray, edge_index: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """One step of a numpy denoiser (``takes_numpy``), float64."""
    return np.asarray(call(pos.astype(np.float32), edge_index, shift.astype(np.float32)), dtype=np.float64)


def _torch_eps(device):
    """One step of a TorchScript denoiser on ``device``, float64 numpy: a function like :func:`_numpy_eps`."""
    import torch

    device = torch.device(device)
    if TORCH_THREADS > 0:
        torch.set_num_threads(TORCH_THREADS)
    # TorchScript's optimising executor profiles the first call and re-optimises on the second (together
    # 1.9-2.5 s instead of 0.24-0.27 s for 1024 oxygens on one CPU thread) and is no faster afterwards
    # (benchmarks/startup.py, both in one process, called in turn); the output is bit-identical (checked
    # on ice, liquid, sI and coexistence frames). So CPU calls run unoptimised; on CUDA the optimiser's
    # kernel fusion may pay (not measured: no GPU here). The setting is per thread and restored after each call.
    optimise = device.type == "cuda"

    def eps_of(call, pos: np.ndarray, edge_index: np.ndarray, shift: np.ndarray) -> np.ndarray:
        args = (
            torch.tensor(pos, dtype=torch.float32, device=device),
            torch.tensor(edge_index, device=device),
            torch.tensor(shift, dtype=torch.float32, device=device),
        )
        with torch.no_grad(), torch.jit.optimized_execution(optimise):
            eps = call(*args)
        return eps.to("cpu", torch.float64).numpy()

    return eps_of
