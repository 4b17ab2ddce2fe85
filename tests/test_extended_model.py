"""The shipped twelve-phase model (models/icephase-12phase.pth): the seven phases plus ice V, XII, sII, sH and IV."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GCICENET

from icephase_lmp.model_file import EXTENDED_MODEL_NAME, load_model, shipped_model_named
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL
from icephase_lmp.references import builtin_reference, supercell

TWELVE = ["Ih", "Ic", "II", "III", "VI", "VII", "sI", "V", "XII", "sII", "sH", "IV"]


@pytest.fixture(scope="module")
def extended():
    return load_model("icephase-12phase")


@pytest.fixture(scope="module")
def pipeline(extended):
    from icephase_lmp.pipeline import Pipeline

    return Pipeline(extended)


def test_the_extended_model_ships_and_loads_by_name(extended):
    """Found by name like the other shipped models (package data), with its twelve phases in code order, the
    calibrated thresholds and the phase vote it was measured with."""
    assert shipped_model_named("icephase-12phase") == shipped_model_named(EXTENDED_MODEL_NAME)
    assert shipped_model_named("icephase-12phase").is_file()
    names = extended.classifier.code_names
    assert [names[c] for c in sorted(names) if c > LIQUID] == TWELVE
    clf = extended.classifier
    assert clf.threshold("euclidean", denoised=True) > 0 and clf.threshold("cosine", denoised=True) > 0
    assert clf.phase_vote.radius == 8.0


@pytest.mark.parametrize("phase", ["V", "XII", "sII", "sH", "IV"])
def test_the_added_phases_are_named(pipeline, extended, phase):
    """GenIce2's cell of each added phase, >= 20 A, with 0.15 A of Gaussian noise: labelled that phase (measured
    100%; the seven-phase model calls them other crystal)."""
    atoms = supercell(builtin_reference(phase).atoms, 20.0)
    pos = atoms.positions + np.random.default_rng(0).normal(0.0, 0.15, atoms.positions.shape)
    codes = pipeline.run(pos, atoms.cell.array, (True,) * 3).codes
    code = {v: k for k, v in extended.classifier.code_names.items()}[phase]
    assert (codes == code).mean() >= 0.99


def test_gcicenet_liquid_is_liquid_and_t_other_crystal(pipeline):
    """GCIceNet's TIP4P/Ice liquid (frame 0, 1,024 molecules) all liquid; its phase T, which none of the twelve
    references is, >= 95% other crystal and < 1% liquid (measured 100%)."""
    from icephase_lmp.trajectory import Selection, read_frames

    def frame(system):
        return next(read_frames(GCICENET / f"md_{system}_10frame.xtc", GCICENET / f"md_{system}.tpr",
                                Selection(name="OW"), slice(0, 1)))

    liquid = frame("w")
    assert (pipeline.run(liquid.positions, liquid.cell, liquid.pbc).codes == LIQUID).all()
    t = frame("T")
    codes = pipeline.run(t.positions, t.cell, t.pbc).codes
    assert (codes == OTHER_CRYSTAL).mean() >= 0.95 and (codes == LIQUID).mean() < 0.01


def test_the_replaced_eleven_phase_name_says_what_to_use(tmp_path, monkeypatch):
    """The eleven-phase file of 2026-12-03 no longer ships: asked for by name, the error names its successor."""
    from icephase_lmp.errors import ModelFileError
    from icephase_lmp.model_file import model_file_path

    monkeypatch.chdir(tmp_path)
    for name in ("icephase-11phase", "icephase-11phase.pth"):
        with pytest.raises(ModelFileError, match="replaced by 'icephase-12phase'.*--model icephase-12phase"):
            model_file_path(name)
    assert model_file_path("icephase-12phase") == shipped_model_named(EXTENDED_MODEL_NAME)


def test_a_crystal_left_out_is_not_named_after_a_phase_that_shares_its_environments(extended):
    """The twelve-phase model without its ice VI references: on ideal ice VI (0.1 A of noise) the classifier
    and the boundary step call 80% of it "XII" (the other crystal step the rest); the shipped file's site table
    turns that into other crystal, since every such molecule sits on one of XII's two sites (XII has two
    thirds on the other). The left-out phase is what ``benchmarks/other_crystal.py --leave-one-out`` measures
    on our MD."""
    from dataclasses import replace

    from icephase_lmp.pipeline import Pipeline
    from icephase_lmp.references import genice_cell
    from icephase_lmp.site_census import SiteTable

    assert len(extended.classifier.sites.counted_codes()) == 9  # all but Ih, Ic and VII have several sites
    without_vi = replace(extended, classifier=extended.classifier.without_phase("VI"))
    no_census = replace(without_vi, classifier=replace(without_vi.classifier, sites=SiteTable.empty(30)))
    atoms = supercell(genice_cell("6"), 16.0)
    pos = atoms.positions + np.random.default_rng(0).normal(0.0, 0.1, atoms.positions.shape)
    xii = TWELVE.index("XII") + 1
    named = Pipeline(no_census).run(pos, atoms.cell.array, (True, True, True)).codes
    assert np.count_nonzero(named == xii) >= 0.5 * len(pos), np.unique(named, return_counts=True)
    codes = Pipeline(without_vi).run(pos, atoms.cell.array, (True, True, True)).codes
    assert np.all(codes == OTHER_CRYSTAL), np.unique(codes, return_counts=True)


def test_a_clathrate_of_sIs_vertices_is_not_named_sI(extended):
    """The empty HS-I hydrate (80 molecules, 0.1 A of noise), which no model has, is built of sI's three kinds of
    vertex in nearly sI's proportions: the twelve-phase model's classifier, boundary step and site census call it
    all "sI"; its ring table (sI, sII, sH) finds 40% of it on rings sI has not (5^12 6^3 cages) and makes it
    other crystal."""
    from dataclasses import replace

    from icephase_lmp.pipeline import Pipeline
    from icephase_lmp.references import genice_cell
    from icephase_lmp.ring_census import RingTable

    assert [TWELVE[c - 1] for c in extended.classifier.rings.counted_codes()] == ["sI", "sII", "sH"]
    no_rings = replace(extended, classifier=replace(extended.classifier, rings=RingTable.empty()))
    atoms = genice_cell("HS1")
    pos = atoms.positions + np.random.default_rng(0).normal(0.0, 0.1, atoms.positions.shape)
    named = Pipeline(no_rings).run(pos, atoms.cell.array, (True, True, True)).codes
    assert np.all(named == TWELVE.index("sI") + 1), np.unique(named, return_counts=True)
    codes = Pipeline(extended).run(pos, atoms.cell.array, (True, True, True)).codes
    assert np.all(codes == OTHER_CRYSTAL), np.unique(codes, return_counts=True)
