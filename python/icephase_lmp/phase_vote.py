"""Which ice: a molecule takes the phase that most ice-labelled molecules around it carry.

Why. The classifier names each molecule's phase from its own environment alone. Where two references share
their local motifs (ice XII and ice V: rings of four to eight molecules in both), thermal motion that the
denoiser does not fully undo sends single molecules of one crystal to the nearest environment of the other.
On our TIP4P/Ice MD of ice XII at 250 K, an eleven-phase model called 8.6% of the molecules V; these were
scattered (620 of 864 molecules never wrong over five frames, one wrong in all five), and within 5 A of
each of them most molecules were labelled XII. A phase is a property of a region, not of one molecule, so the
phase of every ice-labelled molecule is put to a vote among itself and its ice-labelled neighbours within
``radius``.

Only the phase moves: liquid, "other crystal" and not-analysed molecules neither vote nor change, so the
ice/liquid decision is the classifier's and the boundary step's. One round, every molecule deciding on the
classifier's labels, so the result does not depend on the order of the molecules or how the LAMMPS compute
spreads them over ranks.

The radius, 5 A, reaches the first and second neighbour shells (about 20 molecules in our V and XII MD), so that one
wrong label in ten cannot win, and stays well inside the classifier's own reach (``SoapSettings.reach``,
8.7 A), so that the vote does not blur what the classifier resolves: on ideal stackings of Ih and Ic bilayers
(single cubic layers in Ih, single hexagonal layers in Ic, two- and three-layer blocks) it changed no label
of the seven-phase model (docs/validation.md). The radius matters there: at a junction of Ih and Ic stacking the
classifier labels the two sublayers of a bilayer differently, and a first-shell vote (3.5 A: three of the four
neighbours lie in the other sublayer) or a 7 A one swaps them; 5 A keeps them (tests/test_phase_vote.py). A tie
keeps the molecule's own phase.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .geometry import centre_pairs, cloud_pairs
from .phases import LIQUID


@dataclass(frozen=True)
class PhaseVoteSettings:
    """Settings of the phase vote; stored in the model file so that the LAMMPS compute uses the same."""

    #: neighbours within this distance (A) vote; 0 turns the vote off (model files from before it existed)
    radius: float = 0.0

    def to_dict(self) -> dict:
        """The settings as stored in a model file's metadata and classifier header."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "PhaseVoteSettings":
        """Settings from :meth:`to_dict`; ``None`` or empty (a model from before the vote): off."""
        settings = cls(**(data or {}))
        if not settings.radius >= 0.0:
            raise ValueError(f"the phase vote radius must be >= 0 A (0: off), got {settings.radius}")
        return settings


#: the radius new models are exported with (see the module docstring)
DEFAULT_RADIUS = 5.0


def vote_once(codes: np.ndarray, i: np.ndarray, j: np.ndarray, n_centres: int) -> np.ndarray:
    """New codes of centres ``0 .. n_centres - 1`` from directed pairs (i, j) (i a centre, j any atom):
    each centre with a phase (code > LIQUID) takes the phase most common among itself and its neighbours
    with a phase; a tie keeps its own. Other centres keep their code."""
    codes = np.asarray(codes, dtype=np.int32)
    out = codes[:n_centres].copy()
    if n_centres == 0 or codes.max(initial=LIQUID) <= LIQUID:
        return out
    voters = (codes[i] > LIQUID) & (codes[j] > LIQUID)
    width = int(codes.max()) + 1
    # one bincount over (centre, phase) cells: np.add.at cost ~20 us per oxygen for a vote over 8 A
    counts = np.bincount(i[voters] * width + codes[j[voters]], minlength=n_centres * width)
    counts = counts.reshape(n_centres, width)
    own = np.flatnonzero(out > LIQUID)
    counts[own, out[own]] += 1
    best = counts[own].max(axis=1)
    # np.argmax takes the smallest code among equal counts; the own phase wins any tie it is part of
    change = counts[own, out[own]] < best
    out[own[change]] = counts[own[change]].argmax(axis=1)
    return out


def vote_phases(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, settings: PhaseVoteSettings
) -> np.ndarray:
    """The phase vote over a whole frame (offline); ``codes`` as the classifier gave them."""
    codes = np.asarray(codes, dtype=np.int32)
    if settings.radius <= 0.0 or codes.max(initial=LIQUID) <= LIQUID:
        return codes.copy()
    # pairs around the molecules with a phase only (the others keep their code), in any box size
    i, j = centre_pairs(np.asarray(positions, dtype=np.float64), cell, pbc, np.flatnonzero(codes > LIQUID),
                        settings.radius)
    return vote_once(codes, i, j, len(codes))


def vote_in_cloud(codes: np.ndarray, positions: np.ndarray, n_local: int, settings: PhaseVoteSettings) -> np.ndarray:
    """The phase vote for the first ``n_local`` atoms of an open cloud (the LAMMPS compute's local atoms and
    their ghosts, whose codes are their owners'). The cloud must reach ``settings.radius`` beyond the local
    atoms."""
    codes = np.asarray(codes, dtype=np.int32)
    if settings.radius <= 0.0 or codes.max(initial=LIQUID) <= LIQUID:
        return codes[:n_local].copy()
    i, j = cloud_pairs(positions, np.arange(n_local), settings.radius)
    return vote_once(codes, i, j, n_local)
