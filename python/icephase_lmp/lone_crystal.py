"""Crystal labels alone in liquid (one molecule, or two next to each other): liquid.

Why. A crystal is a region, not one molecule. The classifier, the phase vote, the boundary step and the
"other crystal" repeat test each decide per molecule, and in a liquid chance now and then brings a single
molecule within the threshold of a reference environment, or gives it three neighbours with its own
environment. With the eleven-phase model (the shipped file of 2026-12-03) on our MD (every frame,
``runs/md`` and ``runs/interfaces``; a throw-away probe): TIP4P/Ice liquid at 300 K, 4 of 16,128 molecules
labelled other crystal; mW liquid at 220 K, 2 of 23,520 other crystal; TIP4P/Ice at 220 K, 3 of 8,448 ice
III. Every one of the six other-crystal molecules and one of the ice III ones had only liquid-labelled
molecules in its first shell; the other two ice III molecules were a pair, each the other's one crystal
neighbour: the classifier had labelled one of them, and the boundary step grew it into the other. A molecule
of a crystal, even at its face or at the edge of a small nucleus, belongs to a larger group.

The rule: a molecule labelled a phase or other crystal becomes liquid when its first shell (the boundary
step's ``BoundarySettings.shell``, 3.5 A) holds at least one molecule and all of them are liquid-labelled
but at most one crystal-labelled neighbour whose own first shell is likewise liquid but for the molecule
(a crystal group of one or two molecules in liquid). One pass on the codes it is given, so that the LAMMPS
compute's answer does not depend on the ranks: the ghosts carry their owners' codes, and the compute's cloud
reaches 8.7 A beyond its centres, which holds the first shell of a centre's neighbour (7 A). A molecule
with no neighbour, or next to molecules that were not analysed, is left as it is.

Only groups of one or two. Requiring two crystal neighbours of every crystal molecule, as the connectivity
criteria of nucleation studies do, was measured too (``benchmarks/interfaces.py`` with the shipped model):
it also cleared the false ice of the far liquid at our interfaces (the Ic face 99.47 -> 99.61%, three Ih
faces to 100%) but took 1-7 points off the seeds' ice (R = 10 A 70.8 / 59.7 -> 65.3 / 52.8%), whose
outermost molecules hold on with one ice neighbour; not taken. Groups of one or two change no molecule of
the seven-phase model's interface, nucleus and liquid benchmarks (docs/validation.md).
"""

from __future__ import annotations

import numpy as np

from .geometry import centre_pairs
from .phases import LIQUID, OTHER_CRYSTAL


def is_crystal(codes: np.ndarray) -> np.ndarray:
    """True where a code is a phase of the model or other crystal (not liquid, not "not analysed")."""
    codes = np.asarray(codes)
    return (codes > LIQUID) | (codes == OTHER_CRYSTAL)


def isolated_in_liquid(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float,
    n_centres: int | None = None,
) -> np.ndarray:
    """(n_centres,) bool: which of the first ``n_centres`` molecules (default: all) are crystal-labelled in a
    crystal group of one or two molecules with only liquid-labelled molecules around (see the module
    docstring). ``codes`` (N,) and ``positions`` (N, 3): every molecule's code and classified position, a
    whole frame (``cell`` rows, ``pbc``) or the LAMMPS compute's open cloud (``cell`` None), the centres
    first, the ghosts with their owners' codes."""
    codes = np.asarray(codes, dtype=np.int32)
    n_all = len(codes)
    n = n_all if n_centres is None else int(n_centres)
    crystal = is_crystal(codes)
    isolated = np.zeros(n, dtype=bool)
    if not crystal[:n].any() or not np.any(codes == LIQUID):  # nothing to be isolated, or nothing to be in
        return isolated
    # every crystal-labelled molecule's first shell: a centre's neighbour needs its own (in the compute's
    # cloud, a ghost far from the centres gets an incomplete shell, but only neighbours of centres are read)
    i, j = centre_pairs(np.asarray(positions, dtype=np.float64), cell, pbc, np.flatnonzero(crystal), shell)
    neighbours = np.bincount(i, minlength=n_all)
    liquid = np.bincount(i[codes[j] == LIQUID], minlength=n_all)
    crystal_pairs = crystal[j] & (i != j)  # a molecule meeting its own image (a tiny box) is not its partner
    crystal_neighbours = np.bincount(i[crystal_pairs], minlength=n_all)
    # at most one neighbour not liquid, and that one (if any) crystal-labelled
    loose = crystal & (neighbours > 0) & (liquid + np.minimum(crystal_neighbours, 1) == neighbours)
    partner = np.full(n_all, -1)
    partner[i[crystal_pairs]] = j[crystal_pairs]
    alone = loose & (crystal_neighbours == 0)
    paired = loose & (crystal_neighbours == 1) & loose[partner] & (partner[np.maximum(partner, 0)] == np.arange(n_all))
    return (alone | paired)[:n]
