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
