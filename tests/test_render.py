"""Pictures: the OVITO rendering coloured by phase and the phase-fraction plot are real images."""

import numpy as np
from PIL import Image

from icephase_lmp.phases import BUILTIN_PHASES, LIQUID_COLOR
from icephase_lmp.references import supercell
from icephase_lmp.render import plot_phase_fractions, render_phases

NAMES = [p.name for p in BUILTIN_PHASES]


def _colours(path):
    img = np.asarray(Image.open(path).convert("RGB"))
    return img, {tuple(c) for c in img.reshape(-1, 3)}


def test_render_phases_shows_each_phase_colour(tmp_path, references):
    atoms = supercell(references[0].atoms, 20.0)
    codes = np.where(atoms.positions[:, 2] > atoms.cell[2, 2] / 2, 0, 1)  # top half liquid, bottom Ih
    path = render_phases(atoms.positions, atoms.cell.array, codes, NAMES, tmp_path / "f.png", size=(400, 300))
    img, colours = _colours(path)
    assert img.shape == (300, 400, 3)
    assert len(colours) > 50  # shaded spheres, not a blank or flat image
    # pixels close to the Ih blue and to the liquid grey are both present (shading darkens them somewhat)
    flat = img.reshape(-1, 3).astype(float) / 255
    for rgb in (BUILTIN_PHASES[0].color, LIQUID_COLOR):
        hue = np.asarray(rgb) / max(rgb)
        scaled = flat / np.maximum(flat.max(axis=1, keepdims=True), 1e-6)
        assert np.any(np.linalg.norm(scaled - hue, axis=1) < 0.05), rgb


def test_phase_fraction_plot(tmp_path):
    codes = [np.array([1, 1, 0, 7]), np.array([1, 0, 0, 7])]
    path = plot_phase_fractions([0.0, 1.0], codes, NAMES, tmp_path / "p.png")
    img, colours = _colours(path)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert len(colours) > 20
