"""Iterative denoising r <- r - eps(r) of a periodic (or open) oxygen configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .geometry import neighbor_edges, perpendicular_widths


class DenoiseError(ValueError):
    """Bad input to the denoiser; the message says what and how to fix it."""


@dataclass
class DenoiseResult:
    positions: np.ndarray  # (N, 3) denoised positions (unwrapped: each atom moves continuously)
    #: largest displacement of any atom in each iteration (A)
    max_steps: list[float] = field(default_factory=list)
    #: root-mean-square displacement in each iteration (A)
    rms_steps: list[float] = field(default_factory=list)

    @property
    def iterations(self) -> int:
        return len(self.max_steps)


def check_box(cell: np.ndarray | None, pbc, cutoff: float) -> None:
    """A periodic box narrower than twice the cutoff would let an atom see its own image as a neighbour."""
    if cell is None or not np.any(pbc):
        return
    widths = perpendicular_widths(cell)[np.asarray(pbc, dtype=bool)]
    if np.any(widths < cutoff):
        raise DenoiseError(
            f"the periodic box ({', '.join(f'{w:.2f}' for w in widths)} A wide) is smaller than the "
            f"model's cutoff {cutoff:.2f} A: replicate the system (e.g. `replicate 2 2 2` in LAMMPS)"
        )


@torch.no_grad()
def denoise(
    model: torch.nn.Module,
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc,
    r_max: float,
    iterations: int = 8,
    tolerance: float = 0.0,
    device: str | torch.device = "cpu",
) -> DenoiseResult:
    """Apply ``iterations`` denoising steps, stopping early once the largest step is below ``tolerance`` A."""
    pos = np.array(positions, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise DenoiseError("positions contain NaN or Inf: the simulation has blown up or the file is corrupt")
    if iterations < 0:
        raise DenoiseError(f"iterations must be >= 0, got {iterations}")
    check_box(cell, pbc, r_max)
    result = DenoiseResult(pos)
    device = torch.device(device)
    for _ in range(iterations):
        edge_index, shift = neighbor_edges(pos, cell, pbc, r_max)
        eps = model(
            torch.tensor(pos, dtype=torch.float32, device=device),
            torch.tensor(edge_index, device=device),
            torch.tensor(shift, dtype=torch.float32, device=device),
        )
        step = eps.to("cpu", torch.float64).numpy()
        pos = pos - step
        norms = np.linalg.norm(step, axis=1)
        result.max_steps.append(float(norms.max()) if len(norms) else 0.0)
        result.rms_steps.append(float(np.sqrt((norms**2).mean())) if len(norms) else 0.0)
        if result.max_steps[-1] < tolerance:
            break
    result.positions = pos
    return result
