"""The phase vote (phase_vote.py): scattered single-molecule phase swaps inside a crystal go, liquid and other
labels stay, regions of another phase and ties keep their own phase, and the LAMMPS compute's open cloud gives
the local atoms what the periodic frame gives them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import ice_next_to_disorder
from test_cloud import open_cloud

from icephase_lmp.classifier import Classifier
from icephase_lmp.errors import ClassifierError
from icephase_lmp.phase_vote import PhaseVoteSettings, vote_in_cloud, vote_once, vote_phases
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL

VOTE = PhaseVoteSettings(radius=5.0)


def test_vote_once_by_hand():
    # centre 0 (phase 2) among three phase-1 and two liquid neighbours -> 1; centre 1 (liquid) stays liquid;
    # centre 2 (phase 2) with one phase-1 and one phase-2 neighbour: a tie, keeps 2; centre 3 other crystal stays
    codes = np.array([2, LIQUID, 2, OTHER_CRYSTAL, 1, 1, 1, LIQUID, LIQUID, 2], dtype=np.int32)
    i = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    j = np.array([4, 5, 6, 7, 8, 4, 5, 4, 9, 4, 5])
    assert vote_once(codes, i, j, 4).tolist() == [1, LIQUID, 2, OTHER_CRYSTAL]


def test_scattered_swaps_inside_a_crystal_go_and_liquid_stays():
    pos, cell = ice_next_to_disorder(width=30.0)
    x = pos[:, 0] % cell[0, 0]
    ice = x < 0.5 * cell[0, 0]
    rng = np.random.default_rng(1)
    truth = np.where(ice, 1, LIQUID).astype(np.int32)
    codes = truth.copy()
    swapped = ice & (rng.random(len(pos)) < 0.1)
    codes[swapped] = 3
    assert swapped.sum() > 20
    voted = vote_phases(codes, pos, cell, (True,) * 3, VOTE)
    assert np.array_equal(voted, truth)
    # off: nothing changes
    assert np.array_equal(vote_phases(codes, pos, cell, (True,) * 3, PhaseVoteSettings()), codes)


def test_a_region_of_another_phase_keeps_its_phase():
    # two phases side by side, each a slab several molecules thick: the vote moves nothing deep inside either,
    # and at their contact it can only move molecules by one neighbour shell
    pos, cell = ice_next_to_disorder()
    x = pos[:, 0] % cell[0, 0]
    codes = np.where(x < 0.5 * cell[0, 0], 1, 2).astype(np.int32)
    voted = vote_phases(codes, pos, cell, (True,) * 3, VOTE)
    contact = np.minimum.reduce([np.abs(x - 0.5 * cell[0, 0]), x, cell[0, 0] - x])
    assert np.array_equal(voted[contact > 5.0], codes[contact > 5.0])
    assert (voted != codes).mean() < 0.1


def test_cloud_vote_equals_the_periodic_one():
    pos, cell = ice_next_to_disorder()
    rng = np.random.default_rng(2)
    codes = rng.choice(np.array([LIQUID, 1, 2, 3], dtype=np.int32), size=len(pos), p=[0.4, 0.4, 0.1, 0.1])
    periodic = vote_phases(codes, pos, cell, (True,) * 3, VOTE)
    cloud, owner = open_cloud(pos, cell, 9.7)
    local = vote_in_cloud(codes[owner], cloud, len(pos), VOTE)
    assert np.array_equal(local, periodic)
    assert (periodic != codes).sum() > 20


def test_settings_round_trip_and_bad_values(classifier):
    assert PhaseVoteSettings.from_dict(VOTE.to_dict()) == VOTE
    # a model file from before the vote: off
    assert PhaseVoteSettings.from_dict(None).radius == 0.0
    with pytest.raises(ValueError, match="radius"):
        PhaseVoteSettings.from_dict({"radius": -1.0})
    # the classifier stores it, and refuses a radius beyond the cloud the LAMMPS compute hands it
    voting = replace(classifier, phase_vote=VOTE)
    assert Classifier.from_bytes(voting.to_bytes()).phase_vote == VOTE
    with pytest.raises(ClassifierError, match="reach"):
        replace(classifier, phase_vote=PhaseVoteSettings(radius=classifier.soap.reach + 1.0))


def ih_ic_stacking(sequence: str, reps: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Oxygens of ideal ice bilayers stacked by ``sequence``: 'h' puts the next bilayer back over the one
    before the last (hexagonal), 'c' on the third lateral site (cubic); hhhh... is Ih, cccc... is Ic.
    Bilayer k holds a lower sublayer on lateral site X_k and an upper one on Y_k, 0.92 A higher; the
    vertical bond to the next bilayer makes X_{k+1} = Y_k. Returns (positions, cell)."""
    d = 2.76                     # O-O bond
    a, h = d * np.sqrt(8 / 3), d / 3
    site = {0: (0.0, 0.0), 1: (1 / 3, 1 / 3), 2: (2 / 3, 2 / 3)}  # in the 60-degree hexagonal cell
    lower, upper = [0], [1]
    for step in sequence[:-1]:
        lower.append(upper[-1])
        upper.append(lower[-2] if step == "h" else 3 - lower[-2] - upper[-1])
    closing = lower[-1] if sequence[-1] == "h" else 3 - lower[-1] - upper[-1]
    assert (upper[-1], closing) == (lower[0], upper[0]), f"{sequence} does not close periodically"
    a1, a2 = np.array([a, 0.0, 0.0]), np.array([a / 2, a * np.sqrt(3) / 2, 0.0])
    period = d + h
    cell = np.array([a1 * reps, a2 * reps, [0.0, 0.0, period * len(sequence)]])
    pos = []
    for k, (x, y) in enumerate(zip(lower, upper)):
        for s, dz in ((x, 0.0), (y, h)):
            for i in range(reps):
                for j in range(reps):
                    f = np.array(site[s]) + (i, j)
                    pos.append(f[0] * a1 + f[1] * a2 + [0.0, 0.0, k * period + dz])
    return np.array(pos), cell


def test_the_vote_keeps_the_labels_of_mixed_ih_ic_stacking(shipped_model):
    """In ice with mixed stacking the classifier labels Ih and Ic molecule by molecule (sublayer by sublayer
    at a junction); the default 5 A vote leaves those labels as they are, where a first-shell vote (3.5 A)
    swaps whole sublayers: the radius is what keeps the vote from blurring stacking disorder."""
    from icephase_lmp.phase_vote import DEFAULT_RADIUS
    from icephase_lmp.pipeline import Pipeline

    pos, cell = ih_ic_stacking("hhhccchhhccc")
    pos = pos + np.random.default_rng(1).normal(0.0, 0.1, pos.shape)
    result = Pipeline(shipped_model, phase_vote=False).run(pos, cell, (True,) * 3)
    codes = result.codes
    ih, ic = shipped_model.classifier.names.index("Ih") + 1, shipped_model.classifier.names.index("Ic") + 1
    assert np.count_nonzero(codes == ih) > 200 and np.count_nonzero(codes == ic) > 200
    voted = vote_phases(codes, result.positions, cell, (True,) * 3, PhaseVoteSettings(DEFAULT_RADIUS))
    assert np.array_equal(voted, codes)
    first_shell = vote_phases(codes, result.positions, cell, (True,) * 3, PhaseVoteSettings(3.5))
    assert np.count_nonzero(first_shell != codes) > 100
