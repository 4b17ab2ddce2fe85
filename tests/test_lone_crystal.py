"""Crystal labels isolated in liquid, one molecule or a pair, become liquid (lone_crystal.py), in the other-crystal
step's last pass."""

from __future__ import annotations

import numpy as np

from icephase_lmp.geometry import neighbor_edges
from icephase_lmp.lone_crystal import isolated_in_liquid
from icephase_lmp.other_crystal import settle_shells
from icephase_lmp.phases import LIQUID, NOT_ANALYSED, OTHER_CRYSTAL
from icephase_lmp.references import genice_cell, supercell

PBC = (True, True, True)


def ice_ic():
    """Ice Ic, 24 A: every molecule has exactly four neighbours within 3.5 A."""
    atoms = supercell(genice_cell("1c"), 24.0)
    pos, cell = atoms.positions, atoms.cell.array
    (i, j), _ = neighbor_edges(pos, cell, PBC, 3.5)
    first = {a: sorted(j[i == a].tolist()) for a in range(len(pos))}
    assert all(len(v) == 4 for v in first.values())
    return pos, cell, first


def far_apart(first, count, bonds=4):
    """``count`` molecules, each more than ``bonds`` first-shell bonds from every other."""
    def within(a):
        seen = {a}
        for _ in range(bonds):
            seen |= {n for m in seen for n in first[m]}
        return seen
    near, out = set(), []
    for a in range(len(first)):
        if a not in near:
            out.append(a)
            near |= within(a)
            if len(out) == count:
                return out
    raise AssertionError("the lattice is too small for the test")


def test_crystal_labels_isolated_in_liquid_one_or_two():
    """In a liquid-labelled lattice: a lone ice molecule, a lone other-crystal molecule and an isolated pair (ice
    next to other crystal) are isolated; a chain of three is not (the middle has two crystal neighbours, each
    end a partner that has another); nor is a molecule with one crystal neighbour that has a second."""
    pos, cell, first = ice_ic()
    codes = np.full(len(pos), LIQUID, dtype=np.int32)
    lone_ice, lone_other, pair_a, chain_a = far_apart(first, 4)
    pair_b = first[pair_a][0]
    chain_b = first[chain_a][0]
    chain_c = next(n for n in first[chain_b] if n != chain_a)
    codes[lone_ice], codes[lone_other] = 3, OTHER_CRYSTAL
    codes[pair_a], codes[pair_b] = 2, OTHER_CRYSTAL
    codes[[chain_a, chain_b, chain_c]] = 1
    isolated = isolated_in_liquid(codes, pos, cell, PBC, 3.5)
    assert set(np.flatnonzero(isolated)) == {lone_ice, lone_other, pair_a, pair_b}
    out = settle_shells(codes, pos, cell, PBC, 3.5)
    gone = [lone_ice, lone_other, pair_a, pair_b]
    assert (out[gone] == LIQUID).all()
    keep = np.ones(len(pos), bool)
    keep[gone] = False
    assert np.array_equal(out[keep], codes[keep])  # nothing else changes: the chain of three stays


def test_only_liquid_neighbours_make_a_molecule_isolated():
    """A crystal-labelled molecule whose neighbours are "not analysed", or that has no neighbour at all, is
    not isolated in liquid; in a frame without liquid nothing is decided; n_centres decides the first ones only."""
    pos, cell, first = ice_ic()
    codes = np.full(len(pos), NOT_ANALYSED, dtype=np.int32)
    codes[0] = 1
    codes[100] = LIQUID  # some liquid elsewhere
    assert not isolated_in_liquid(codes, pos, cell, PBC, 3.5).any()
    # alone in a gas: no neighbour within the shell
    gas = np.array([[0.0, 0, 0], [5.0, 0, 0]])
    assert not isolated_in_liquid(np.array([1, LIQUID]), gas, None, (False,) * 3, 3.5).any()
    all_ice = np.ones(len(pos), dtype=np.int32)
    assert not isolated_in_liquid(all_ice, pos, cell, PBC, 3.5).any()
    codes = np.full(len(pos), LIQUID, dtype=np.int32)
    codes[0] = 5
    assert isolated_in_liquid(codes, pos, cell, PBC, 3.5, n_centres=1).tolist() == [True]
    assert len(isolated_in_liquid(codes, pos, cell, PBC, 3.5, n_centres=10)) == 10


def test_the_pipeline_drops_a_crystal_label_isolated_in_liquid(shipped_model, monkeypatch):
    """End to end: a classifier that calls one molecule of a liquid frame ice (stand-in for chance) leaves
    the pipeline with that molecule liquid; without the other-crystal step (where the rule runs) it stays ice.
    The boundary step is off here: in this frame it grows the one false ice molecule into five (its neighbours'
    shells are ordered enough), which are then not alone; the rule removes single labels only."""
    from conftest import GCICENET

    from icephase_lmp.classifier import Classifier
    from icephase_lmp.pipeline import Pipeline
    from icephase_lmp.trajectory import Selection, read_frames

    frame = next(read_frames(GCICENET / "md_w_10frame.xtc", GCICENET / "md_w.tpr", Selection(name="OW"),
                             slice(0, 1)))
    real = Classifier.classify_reduced

    def one_false_ice(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        assert (out.codes == LIQUID).all()  # the real classifier calls this frame liquid
        out.codes[7] = 1
        return out

    monkeypatch.setattr(Classifier, "classify_reduced", one_false_ice)
    codes = Pipeline(shipped_model, boundary_rounds=0).run(frame.positions, frame.cell, frame.pbc).codes
    assert (codes == LIQUID).all()
    without = Pipeline(shipped_model, boundary_rounds=0, other_crystal=False)
    codes = without.run(frame.positions, frame.cell, frame.pbc).codes
    assert codes[7] == 1 and (np.delete(codes, 7) == LIQUID).all()
