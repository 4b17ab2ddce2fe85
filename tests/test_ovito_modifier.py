"""The OVITO modifier in an `ovito` Python pipeline: named, coloured phase types from a dump's code column,
and the classify option against the Pipeline run on the same positions."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from conftest import REPO

ovito = pytest.importorskip("ovito")


def write_dump(path, positions, cell, types, codes=None, column="code"):
    """A LAMMPS `dump custom` with element names and, optionally, a code column (written here, not by icephase)."""
    element = {1: "O", 2: "H"}
    with path.open("w") as fh:
        fh.write(f"ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n{len(positions)}\nITEM: BOX BOUNDS pp pp pp\n")
        fh.write("".join(f"0 {cell[i, i]:.6f}\n" for i in range(3)))
        fh.write("ITEM: ATOMS id type element x y z" + (f" {column}" if codes is not None else "") + "\n")
        for i, (t, (x, y, z)) in enumerate(zip(types, positions)):
            extra = f" {codes[i]}" if codes is not None else ""
            fh.write(f"{i + 1} {t} {element[t]} {x:.6f} {y:.6f} {z:.6f}{extra}\n")


def computed(path, **options):
    from ovito.io import import_file

    from icephase_lmp.ovito_modifier import IcePhaseModifier

    pipeline = import_file(str(path))
    pipeline.modifiers.append(IcePhaseModifier(**options))
    return pipeline.compute()


def check_types(data, codes):
    from icephase_lmp.phases import BUILTIN_PHASES, LIQUID_COLOR, NOT_ANALYSED_COLOR, OTHER_CRYSTAL_COLOR

    stype = data.particles["Structure Type"]
    np.testing.assert_array_equal(np.asarray(stype), codes)
    types = {t.id: (t.name, tuple(t.color)) for t in stype.types}
    expected = {-2: ("other crystal", OTHER_CRYSTAL_COLOR), -1: ("not analysed", NOT_ANALYSED_COLOR),
                0: ("liquid", LIQUID_COLOR)}
    expected.update({p.code: (p.name, p.color) for p in BUILTIN_PHASES})
    assert types.keys() == expected.keys()
    for code, (name, color) in expected.items():
        assert types[code][0] == name
        np.testing.assert_allclose(types[code][1], color)
    colors = np.asarray(data.particles["Color"])
    np.testing.assert_allclose(colors, [expected[int(c)][1] for c in codes])


@pytest.mark.parametrize("column, option", [("code", {}), ("c_phase[1]", {}), ("c_ice[1]", {"code_property": "c_ice[1]"})])
def test_names_and_colours_from_the_code_column(tmp_path, column, option):
    rng = np.random.default_rng(0)
    codes = rng.integers(-2, 8, 40)  # -2: other crystal
    positions = rng.uniform(0, 12, (40, 3))
    path = tmp_path / "labels.lammpstrj"
    write_dump(path, positions, np.eye(3) * 12, [1] * 40, codes, column)
    check_types(computed(path, **option), codes)


def test_unknown_column_and_code_are_reported(tmp_path):
    path = tmp_path / "labels.lammpstrj"
    write_dump(path, np.zeros((2, 3)) + [[1, 1, 1], [5, 5, 5]], np.eye(3) * 12, [1, 1], [1, 1], "phase")
    with pytest.raises(Exception, match="code_property"):
        computed(path)
    write_dump(path, np.zeros((2, 3)) + [[1, 1, 1], [5, 5, 5]], np.eye(3) * 12, [1, 1], [1, 12])
    with pytest.raises(Exception, match="code table"):
        computed(path)


def test_classify_option_matches_the_pipeline(tmp_path, references, shipped_model):
    from icephase_lmp.pipeline import Pipeline
    from icephase_lmp.references import supercell

    ih = supercell(references[0].atoms, 16.0)
    cell = ih.cell.array
    rng = np.random.default_rng(4)
    oxygens = (ih.positions + rng.normal(0, 0.15, ih.positions.shape)) % np.diag(cell)
    hydrogens = (oxygens[:10] + [0.96, 0.0, 0.0]) % np.diag(cell)
    positions = np.vstack([oxygens, hydrogens])
    types = [1] * len(oxygens) + [2] * len(hydrogens)
    path = tmp_path / "frame.lammpstrj"
    write_dump(path, positions, cell, types)
    # the reference: the Pipeline on the positions as the dump holds them (6 decimals)
    written = np.round(oxygens, 6)
    expected = Pipeline(shipped_model).run(written, np.diag(np.round(np.diag(cell), 6)), (True, True, True))
    data = computed(path, classify=True)
    codes = np.concatenate([expected.codes, np.full(len(hydrogens), -1)])
    check_types(data, codes)
    distances = np.asarray(data.particles["icephase Distance"])
    np.testing.assert_allclose(distances[: len(oxygens)], expected.distances, rtol=1e-6, atol=1e-6)
    assert np.isnan(distances[len(oxygens):]).all()
    np.testing.assert_array_equal(np.asarray(data.particles["icephase Cluster"])[: len(oxygens)], expected.clusters.ids)
    assert data.attributes["icephase.largest_cluster"] == expected.clusters.largest
    assert np.mean(expected.codes == 1) > 0.95


def test_registered_as_an_ovito_modifier_entry_point():
    """OVITO Pro finds modifiers through the `OVITO.Modifier` entry point: it must name this class."""
    from importlib import import_module

    from ovito.pipeline import ModifierInterface

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"]["OVITO.Modifier"]
    assert len(entries) == 1
    module, _, name = next(iter(entries.values())).partition(":")
    assert issubclass(getattr(import_module(module), name), ModifierInterface)


def test_script_for_ovito_basic_uses_the_same_styles():
    """`icephase ovito-script` (OVITO Basic) embeds the same names and colours as the modifier."""
    from icephase_lmp.phases import BUILTIN_PHASES, phase_styles
    from icephase_lmp.render import ovito_modifier_source

    names = [p.name for p in BUILTIN_PHASES]
    namespace: dict = {}
    exec(ovito_modifier_source(names, "code"), namespace)  # the script needs only numpy and ovito
    for code, (name, color) in phase_styles(names).items():
        assert namespace["PHASES"][code][0] == name
        np.testing.assert_allclose(namespace["PHASES"][code][1], color, atol=1e-3)
