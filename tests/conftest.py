"""Shared fixtures. Tests run with one torch thread: two threads on 2-core CI machines were 5-20x slower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GCICENET = SHARED / "data" / "gcicenet"
SHIPPED_MODEL = REPO / "models" / "icephase-7phase.pth"


@pytest.fixture(scope="session")
def references():
    from icephase_lmp.references import builtin_references

    return builtin_references()


@pytest.fixture(scope="session")
def classifier(references):
    """A classifier fitted from the built-in references (no MD data), as `icephase export` fits it."""
    from icephase_lmp.classifier import fit_classifier

    return fit_classifier(references)


@pytest.fixture(scope="session")
def shipped_model():
    from icephase_lmp.model_file import load_model

    assert SHIPPED_MODEL.is_file(), f"the shipped model {SHIPPED_MODEL} is missing from the repository"
    return load_model(SHIPPED_MODEL)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def liquid_like(n: int, density: float, rng: np.random.Generator, min_dist: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """A random configuration of n oxygens at ``density`` g/cm3 with no pair closer than ``min_dist``.

    Random sequential insertion: dense enough to be liquid-like, with no crystalline order at all.
    """
    from icephase_lmp.references import WATER_MOLAR_MASS

    volume = n * WATER_MOLAR_MASS / 6.02214076e23 / density * 1e24
    box = volume ** (1 / 3)
    pos = np.empty((0, 3))
    while len(pos) < n:
        trial = rng.uniform(0, box, 3)
        d = pos - trial
        d -= box * np.round(d / box)
        if len(pos) == 0 or np.min(np.einsum("ij,ij->i", d, d)) > min_dist**2:
            pos = np.vstack([pos, trial])
    return pos, np.eye(3) * box


def ice_ball_in_disorder(seed: int = 3, width: float = 36.0, radius: float = 11.0,
                         noise: float = 0.45, film: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Ice Ih with 0.1 A of noise within ``radius`` of the box centre and ``noise`` A elsewhere: a crystallite
    (~220 molecules labelled ice of 1,600) in a lattice too noisy for the classifier but ordered enough after
    denoising for the boundary step to grow into (step 5's test: small crystallites get more rounds).
    ``film``: within ``radius`` of the plane x = L/2 instead, a film across the box."""
    from icephase_lmp.references import builtin_reference, supercell

    atoms = supercell(builtin_reference("Ih").atoms, width)
    cell = atoms.cell.array.copy()
    pos = atoms.positions.copy()
    offset = pos - 0.5 * cell.sum(axis=0)
    inside = np.abs(offset[:, 0]) < radius if film else np.linalg.norm(offset, axis=1) < radius
    sigma = np.where(inside, 0.1, noise)
    return pos + np.random.default_rng(seed).normal(size=pos.shape) * sigma[:, None], cell


def ice_next_to_disorder(seed: int = 5, width: float = 22.0) -> tuple[np.ndarray, np.ndarray]:
    """Ice Ih (0.1 A noise) whose half x > L/2 is replaced by random oxygens no closer than 2.5 A: an ice slab,
    periodic along y and z, next to disordered oxygens (the boundary step's and the cluster recipe's test)."""
    from icephase_lmp.references import builtin_reference, supercell

    atoms = supercell(builtin_reference("Ih").atoms, width)
    cell = atoms.cell.array.copy()
    rng = np.random.default_rng(seed)
    pos = atoms.positions + rng.normal(0.0, 0.1, atoms.positions.shape)
    kept = list(pos[(pos[:, 0] % cell[0, 0]) < 0.5 * cell[0, 0]])
    inv = np.linalg.inv(cell)
    while len(kept) < len(pos):
        trial = np.array([rng.uniform(0.52, 0.98), rng.uniform(), rng.uniform()]) @ cell
        d = np.asarray(kept) - trial
        d -= np.round(d @ inv) @ cell
        if np.min(np.einsum("ij,ij->i", d, d)) > 2.5**2:
            kept.append(trial)
    return np.asarray(kept), cell
