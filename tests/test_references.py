import numpy as np
import pytest

from icephase_lmp.errors import ReferenceStructureError
from icephase_lmp.phases import BUILTIN_PHASES, LIQUID, NOT_ANALYSED, builtin_phase, code_table, color_for
from icephase_lmp.references import (
    builtin_reference,
    builtin_references,
    load_references,
    parse_reference,
    scaled_to_density,
    supercell,
    water_density,
)


def test_code_table_matches_the_documented_codes():
    # the codes every part of the project (C++, docs, dumps) relies on, written out independently here
    expected = {-2: "other crystal", -1: "not analysed", 0: "liquid", 1: "Ih", 2: "Ic", 3: "II", 4: "III", 5: "VI",
                6: "VII", 7: "sI"}
    assert code_table([p.name for p in BUILTIN_PHASES]) == expected
    assert (NOT_ANALYSED, LIQUID) == (-1, 0)


def test_builtin_references_have_genice_site_counts(references):
    # O per unit cell for 1h 1c 2 3 6 7 CS1 (GenIce2 lattice definitions)
    assert [len(r.atoms) for r in references] == [16, 8, 12, 12, 10, 16, 46]
    assert [r.name for r in references] == ["Ih", "Ic", "II", "III", "VI", "VII", "sI"]


def test_references_are_deterministic():
    a, b = builtin_reference("sI"), builtin_reference("CS1")
    assert np.array_equal(a.atoms.positions, b.atoms.positions)


def test_ice_ih_has_four_neighbours_at_2_75(references):
    ih = supercell(references[0].atoms, 10.0)
    d = ih.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    first = np.sort(d, axis=1)[:, :4]
    # GenIce2's Ih cell is slightly anisotropic: first-shell O-O distances 2.75-2.81 A
    assert np.all((first > 2.70) & (first < 2.85))
    assert np.all(np.sort(d, axis=1)[:, 4] > 4.0)


def test_density_setting_and_scaling():
    vii = parse_reference("VII@1.78")
    assert vii.density == pytest.approx(1.78, rel=1e-9)
    # density of ice Ih from its cell: 16 molecules of 18.015 g/mol in the cell volume
    ih = builtin_reference("Ih")
    vol = abs(np.linalg.det(ih.atoms.cell.array)) * 1e-24
    assert water_density(ih.atoms) == pytest.approx(16 * 18.015 / 6.02214076e23 / vol)
    assert scaled_to_density(ih.atoms, 1.0).get_volume() == pytest.approx(ih.atoms.get_volume() * 0.921 / 1.0, rel=2e-3)


def test_user_references_from_genice_lattice_and_file(tmp_path):
    from ase.io import write

    v = parse_reference("V=5")
    assert v.name == "V" and len(v.atoms) > 0 and v.source == "genice2:5"
    path = tmp_path / "ice.cif"
    write(path, builtin_reference("Ic").atoms)
    mine = parse_reference(f"mine={path}@0.95")
    assert mine.name == "mine" and len(mine.atoms) == 8 and mine.density == pytest.approx(0.95)


@pytest.mark.parametrize(
    "spec, words",
    [("nosuchlattice", "GenIce2 has no lattice"), ("VII@dense", "not a number"), ("=", "names no phase")],
)
def test_bad_reference_specs_name_the_problem(spec, words):
    with pytest.raises(ReferenceStructureError, match=words):
        parse_reference(spec)


def test_duplicate_names_rejected():
    with pytest.raises(ReferenceStructureError, match="unique"):
        load_references(["Ih", "1h"])


def test_reference_file_without_oxygen(tmp_path):
    from ase import Atoms
    from ase.io import write

    path = tmp_path / "cu.cif"
    write(path, Atoms("Cu", cell=[3, 3, 3], pbc=True))
    with pytest.raises(ReferenceStructureError, match="no O atom"):
        parse_reference(str(path))


def test_colours_are_fixed_per_phase():
    names = ["Ih", "mine"]
    assert color_for(1, names) == builtin_phase("Ih").color
    assert color_for(2, names) != color_for(1, names)
    assert len({p.color for p in BUILTIN_PHASES}) == len(BUILTIN_PHASES)


def test_known_phases_have_their_own_code_colour_and_site_count():
    from icephase_lmp.phases import KNOWN_PHASES
    from icephase_lmp.references import genice_cell

    assert [p.code for p in KNOWN_PHASES] == list(range(1, len(KNOWN_PHASES) + 1))
    assert len({p.color for p in KNOWN_PHASES}) == len(KNOWN_PHASES)
    for phase in KNOWN_PHASES:
        assert builtin_phase(phase.name) is phase and builtin_phase(phase.lattice) is phase
        assert len(genice_cell(phase.lattice)) == phase.sites_per_cell, phase.name
    # the extended phases name their references, and the default set stays the paper's seven
    assert parse_reference("sII").name == "sII" and parse_reference("sII").source == "genice2:CS2"
    assert [r.name for r in builtin_references()] == [p.name for p in BUILTIN_PHASES]
