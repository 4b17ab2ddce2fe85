"""A crystal label alone in liquid: liquid.

Why. A crystal is a region, not one molecule. The classifier, the phase vote, the boundary step and the
"other crystal" repeat test each decide per molecule, and in a liquid chance now and then brings a single
molecule within the threshold of a reference environment, or gives it three neighbours with its own
environment. With the eleven-phase model (models/icephase-11phase.pth) on our MD (every frame,
``runs/md`` and ``runs/interfaces``; a throw-away probe): TIP4P/Ice liquid at 300 K, 4 of 16,128 molecules
labelled other crystal; mW liquid at 220 K, 2 of 23,520 other crystal; TIP4P/Ice at 220 K, 3 of 8,448 ice
III. Every one of the six other-crystal molecules and one of the ice III ones had only liquid-labelled
molecules in its first shell (the other two ice III molecules were each other's one crystal neighbour).
A molecule of a crystal, even at its face or at the edge of a small nucleus, has crystal neighbours.

The rule: a molecule labelled a phase or other crystal whose first shell (the boundary step's
``BoundarySettings.shell``, 3.5 A) holds at least one molecule, all of them liquid, becomes liquid. One pass
on the codes it is given, so that the LAMMPS compute's answer does not depend on the ranks (the ghosts carry
their owners' codes). A molecule with no neighbour at all (a gas) is left as it is.

Only a molecule entirely alone. Requiring two crystal neighbours, as the connectivity criteria of nucleation
studies do, was measured too (``benchmarks/interfaces.py`` with the shipped model): it also cleared the
false ice of the far liquid at our interfaces (the Ic face 99.47 -> 99.61%, three Ih faces to 100%) but took
1-7 points off the seeds' ice (R = 10 A 70.8 / 59.7 -> 65.3 / 52.8%), whose outermost molecules hold on with
one ice neighbour; not taken. With the seven-phase model, no molecule of those benchmarks is alone.
"""

from __future__ import annotations

import numpy as np

from .geometry import centre_pairs
from .phases import LIQUID, OTHER_CRYSTAL


def is_crystal(codes: np.ndarray) -> np.ndarray:
    """True where a code is a phase of the model or other crystal (not liquid, not "not analysed")."""
    codes = np.asarray(codes)
    return (codes > LIQUID) | (codes == OTHER_CRYSTAL)


def alone_in_liquid(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float,
    n_centres: int | None = None,
) -> np.ndarray:
    """(n_centres,) bool: which of the first ``n_centres`` molecules (default: all) are crystal-labelled with
    a first shell (``shell``, A) of liquid-labelled molecules only. ``codes`` (N,) and ``positions`` (N, 3):
    every molecule's code and classified position, a whole frame (``cell`` rows, ``pbc``) or the LAMMPS
    compute's open cloud (``cell`` None), the centres first, the ghosts with their owners' codes."""
    codes = np.asarray(codes, dtype=np.int32)
    n = len(codes) if n_centres is None else int(n_centres)
    crystal = is_crystal(codes)
    centres = np.flatnonzero(crystal[:n])
    alone = np.zeros(n, dtype=bool)
    if len(centres) == 0 or not np.any(codes == LIQUID):  # nothing to be alone, or nothing to be alone in
        return alone
    positions = np.asarray(positions, dtype=np.float64)
    i, j = centre_pairs(positions, cell, pbc, centres, shell)
    # a molecule meeting its own image in a small box (j == i) has a crystal neighbour: itself
    neighbours = np.bincount(i, minlength=n)[:n]
    liquid_neighbours = np.bincount(i[codes[j] == LIQUID], minlength=n)[:n]
    alone[centres] = (neighbours[centres] > 0) & (liquid_neighbours[centres] == neighbours[centres])
    return alone
