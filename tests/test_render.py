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


def test_ovito_script_modifier_names_the_phases(tmp_path, monkeypatch):
    """The modifier `icephase ovito-script` writes works inside OVITO's own pipeline on a compute dump."""
    from ovito.io import import_file
    from ovito.modifiers import PythonScriptModifier

    from icephase_lmp.cli import main

    dump = tmp_path / "labels.lammpstrj"
    rows = "".join(f"{i + 1} 1 O {i % 5 * 3.0} {i // 5 * 3.0} 1.0 {code} 0.5\n" for i, code in enumerate([0, 1, 1, 7, -1]))
    dump.write_text("ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n5\nITEM: BOX BOUNDS pp pp pp\n0 20\n0 20\n0 20\n"
                    "ITEM: ATOMS id type element x y z c_phase[1] c_phase[2]\n" + rows)
    script = tmp_path / "mod.py"
    assert main(["ovito-script", "--out", str(script)]) == 0
    pipeline = import_file(str(dump))
    pipeline.modifiers.append(PythonScriptModifier(script=script.read_text()))
    data = pipeline.compute()
    stype = data.particles["Structure Type"]
    assert list(stype) == [0, 1, 1, 7, -1]
    names = {t.id: t.name for t in stype.types}
    assert names[0] == "liquid" and names[1] == "Ih" and names[7] == "sI" and names[-1] == "not analysed"
    colors = np.asarray(data.particles["Color"])
    assert np.allclose(colors[1], BUILTIN_PHASES[0].color, atol=1e-3)
