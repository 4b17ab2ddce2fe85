"""Crystals without a reference: "other crystal" instead of "liquid".

Why. The classifier calls liquid every molecule whose environment is far from all reference environments.
For a crystal the model has no reference for (ice V or XII, an sII hydrate, GCIceNet's phase T), that is a
wrong answer, not a cautious one: a user who compresses water and reads "liquid" concludes that it melted.

The test. A crystal repeats itself; a liquid does not. After denoising, a molecule of a crystal still has
neighbours whose environments equal its own (symmetry-equivalent sites), while in a liquid, and in the
disordered band of an interface, every environment differs. So a molecule that the classifier and the
boundary step leave liquid becomes ``OTHER_CRYSTAL`` when at least ``MIN_REPEATS`` of the molecules within
``RADIUS`` (8 A) of it have an environment (the classifier's reduced SOAP vector) closer to its own than the
model's ice/liquid threshold, in the model's metric. No new parameter is fitted: "closer than the
threshold" is what already means "the same environment" for the classifier.

The test looks twice where the denoiser runs more than :data:`REPEAT_TEST_ITERATIONS` iterations: at the
classified positions and at those after the first iterations, which a crystal the denoiser was never trained
on still has before the later steps smear it (:func:`second_look`); a molecule repeats where it does at either.
The second look is for the molecules the first misses that have a near twin (:func:`first_look_misses`), and
reads the vectors of those and their near twins only (:func:`second_look_centres`).

Molecules inside such a crystal that the test misses (a site whose environment no neighbour repeats
closely enough: a defect, or a site with only one or two copies within 8 A) are enclosed by it: a
liquid-labelled molecule whose first shell (the boundary step's, 3.5 A) holds at least
``MIN_ENCLOSING_NEIGHBOURS`` molecules, at least ``ENCLOSED_FRACTION`` of them other crystal, joins it
(:func:`join_enclosed`, on the codes the repeat test left after phase labels inside other crystal have joined
it, below: :func:`settle_shells`). In GCIceNet's phase T all 156 molecules
left liquid had 10-13 other-crystal molecules in their first shell and none had an ordered (ice-like) shell.
A liquid has no other crystal to be enclosed by, and a liquid molecule at the face of a crystal has about half
of its first shell in it.

In the same last pass, a phase or other-crystal label isolated in liquid (one molecule, or a pair) becomes liquid
(``lone_crystal.py`` says why): a single repeat-test hit in a liquid is chance, not a crystal. And a phase label
inside other crystal, where more than half of the crystal-labelled molecules within ``RADIUS`` are other
crystal, becomes other crystal (:func:`phase_inside_other_crystal`): which crystal a molecule belongs to is a
property of its region, as the phase vote has it, and a crystal without a reference can hold sites whose
environment falls near some reference (the fast model called 5.6% of our ice IV MD "VI", scattered molecules
with 92-97% other crystal within 8 A).

Measured: ``benchmarks/repeated_environments.py`` (liquids and GCIceNet's phase T), ``benchmarks/other_crystal.py``
(crystals without a reference), ``benchmarks/interfaces.py`` (interfaces, nuclei, supercooled liquids);
docs/validation.md, "Other crystal".
"""

from __future__ import annotations

import numpy as np

from .classifier import Classifier, row_distance
from .geometry import centre_pairs
from .lone_crystal import isolated_in_liquid
from .phases import LIQUID, OTHER_CRYSTAL

try:
    from . import _soap_kernel  # the compiled repeat count, where the package was built with a compiler
except ImportError:
    _soap_kernel = None

#: A: about one unit cell of the low-symmetry ices. A crystal with several distinct sites (ice V: four,
#: in a 9.2 x 7.5 x 10.3 A cell) has the symmetry-equivalent copies of a molecule spread over a cell: on our
#: TIP4P/Ice MD of ice V, 72-79% of the molecules had three repeats within 6 A, 95-96% within 8 A (XII:
#: 98.4% and 99.4%), while no molecule of any liquid, interface or nucleus had three at either radius.
#: It stays inside the classifier's cloud in LAMMPS (the SOAP reach, 8.7 A)
RADIUS = 8.0
#: Repeats needed. One repeat can be chance (0.13-0.26% of liquid molecules had one); two already
#: never occurred in our liquids; three leaves a margin of one
MIN_REPEATS = 3
#: Denoising iterations after which the repeat test looks a second time (where the model runs more): a
#: molecule repeats if it does there or at the classified positions. The first steps remove most of the
#: thermal noise, the denoiser's trained task for any crystal; later steps can pull a crystal it was never
#: trained on towards the ones it knows, and not alike at symmetry-equivalent sites. On our TIP4P/Ice MD of
#: ice IV (no reference in any shipped model) the share of molecules with three repeats falls from 95% after
#: 2 iterations to 89% after 4 and 47% after 8, and the seven-phase model called 46% of it liquid. Other
#: crystals with large i.i.d. noise (ideal V, XII, sH + 0.2-0.25 A) repeat more after all iterations: hence
#: both looks. No liquid molecule of ours had three repeats at either (docs/validation.md, "The second look").
REPEAT_TEST_ITERATIONS = 2
#: The second look is for the liquid-labelled molecules with a neighbour (a *near twin*) whose environment lies
#: within this many thresholds of their own at the classified positions but too few repeats there, and
#: compares them with their near twins only (the others' vectors are not computed: a second SOAP of every
#: liquid molecule cost 1.5-2x the first in a liquid frame, and of every molecule with a near twin 1.4x the
#: whole call on GCIceNet's T, where the first look already finds all but 1-1.3% of the crystal). A crystal the
#: later steps smear keeps its sites near each other: 96.7% of our ice IV molecules are within 1.25 thresholds
#: of a neighbour; 0.1-2.3% of our supercooled liquids' molecules are.
SECOND_LOOK_FACTOR = 1.25


#: First-shell neighbours a molecule needs before it can be enclosed: fewer is a molecule at a surface or in
#: a gas, not inside a crystal (a water molecule in a crystal has 4, in the dense ices 8-14)
MIN_ENCLOSING_NEIGHBOURS = 4
#: Share of those neighbours that must be other crystal: 3 of 4, 4 of 5, 10 of 13. A molecule of a crystal's
#: first layer has 3 of its 4 neighbours in the crystal; a liquid molecule in contact with a face has 1-2
ENCLOSED_FRACTION = 0.75


#: A phase-labelled molecule becomes other crystal where more than this share of the crystal-labelled molecules
#: within ``RADIUS`` (itself included) are other crystal: the region's majority. A molecule of a known crystal
#: at a flat boundary with an unknown one has about half its crystal neighbours on each side and keeps its phase
OTHER_MAJORITY = 0.5


#: the compiled repeat count's metric codes (classifier.row_distance's two metrics)
_METRIC_CODES = {"euclidean": 0, "cosine": 1}
_CHUNK = 65536  # pairs per block: memory stays bounded on large systems
#: Leading reduced components compared first with the Euclidean metric: a pair that differs by the threshold
#: or more in them differs by at least as much in all of them, so only the others need the whole distance
#: (in the GCIceNet liquid frame 1.2% of the pairs, in the crystal T 51%). Exact, and cheaper than
#: gathering every component of every pair.
_LEADING = 8


def repeat_counts(
    reduced: np.ndarray, edges: tuple[np.ndarray, np.ndarray], metric: str, threshold: float, n_centres: int
) -> np.ndarray:
    """(n_centres,) int: for each centre, the neighbours (``edges``: centre -> neighbour pairs within
    :data:`RADIUS`) whose reduced feature vector lies within ``threshold`` of the centre's."""
    i, j = edges
    if _soap_kernel is not None and metric in _METRIC_CODES:
        # compiled: one pass over the pairs, the Euclidean sum stopped at the threshold (the numpy code
        # below gathered every pair's vectors: 3/4 of this step on a liquid-labelled frame)
        return _soap_kernel.repeat_counts(np.ascontiguousarray(reduced, dtype=np.float64), np.asarray(i, np.int64),
                                          np.asarray(j, np.int64), float(threshold), _METRIC_CODES[metric],
                                          int(n_centres))
    mine = i < n_centres
    i, j = i[mine], j[mine]
    if len(i) == 0:
        return np.zeros(n_centres, dtype=np.int64)
    repeats = []
    for k in range(0, len(i), _CHUNK):
        a, b = i[k : k + _CHUNK], j[k : k + _CHUNK]
        if metric == "euclidean":
            lead = reduced[a, :_LEADING] - reduced[b, :_LEADING]
            close = np.einsum("ij,ij->i", lead, lead) < threshold * threshold
            a, b = a[close], b[close]
        repeats.append(a[row_distance(reduced[a], reduced[b], metric) < threshold])
    return np.bincount(np.concatenate(repeats), minlength=n_centres)


Pairs = tuple[np.ndarray, np.ndarray]


def liquid_pairs(codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc) -> Pairs:
    """(i, j): every molecule j within :data:`RADIUS` of a liquid-labelled centre i (``codes`` of the centres,
    the first ``len(codes)`` molecules of ``positions``): the pairs the repeat test compares. Only liquid-
    labelled centres can change, and in the compute's open cloud the ghosts can outnumber the centres: the
    search runs around those centres only."""
    liquid = np.flatnonzero(np.asarray(codes) == LIQUID)
    return centre_pairs(np.asarray(positions, dtype=np.float64), cell, pbc, liquid, RADIUS)


def first_look_misses(codes: np.ndarray, reduced: np.ndarray, metric: str, threshold: float,
                      pairs: Pairs) -> np.ndarray:
    """(n,) bool for the ``n = len(codes)`` centres: the liquid-labelled ones the second look is for, which
    have a *near twin* (a neighbour within :data:`RADIUS` whose environment, ``reduced`` at the classified
    positions, lies within :data:`SECOND_LOOK_FACTOR` times the threshold of their own; NaN rows never count)
    but fewer than :data:`MIN_REPEATS` repeats there. ``pairs``: :func:`liquid_pairs`."""
    codes = np.asarray(codes, dtype=np.int32)
    liquid = codes == LIQUID
    if not liquid.any():
        return liquid
    reduced = np.asarray(reduced, dtype=np.float64)
    near = repeat_counts(reduced, pairs, metric, SECOND_LOOK_FACTOR * threshold, len(codes))
    twinned = liquid & (near >= 1)
    if not twinned.any():
        return twinned
    # the repeats of the molecules with a near twin only (0.1-2.3% of a liquid's): find_other_crystal counts
    # them for every liquid-labelled molecule afterwards
    i, j = pairs
    keep = twinned[i]
    same = repeat_counts(reduced, (i[keep], j[keep]), metric, threshold, len(codes))
    return twinned & (same < MIN_REPEATS)


def second_look_centres(codes: np.ndarray, reduced: np.ndarray, misses: np.ndarray, metric: str,
                        threshold: float, pairs: Pairs) -> np.ndarray:
    """(n,) bool for the ``n = len(codes)`` centres: those whose vectors the second look reads, the misses
    (:func:`first_look_misses`) and the liquid-labelled near twins of a miss. ``misses`` covers every
    molecule of ``reduced``: a whole frame, or the LAMMPS compute's cloud with the ghosts' flags from their
    owners (a molecule's own neighbourhood decides whether it misses). A molecule that repeats at the first
    look is other crystal whatever the second says, so where the first look already finds a crystal (GCIceNet's
    T: 1-1.3% of its molecules miss) the second computes the few vectors a miss is compared with."""
    codes = np.asarray(codes, dtype=np.int32)
    n = len(codes)
    misses = np.asarray(misses, dtype=bool)
    out = misses[:n] & (codes == LIQUID)
    if not misses.any():
        return out
    i, j = pairs
    towards = misses[j] & (i < n)
    twins = repeat_counts(np.asarray(reduced, dtype=np.float64), (i[towards], j[towards]), metric,
                          SECOND_LOOK_FACTOR * threshold, n)
    return out | ((codes == LIQUID) & (twins >= 1))


def repeat_vectors(classifier: Classifier, centres: np.ndarray, positions: np.ndarray, cell: np.ndarray | None,
                   pbc) -> np.ndarray:
    """(n, k): the classifier's reduced SOAP vectors at ``positions`` of the ``centres`` (a bool mask over the
    first n molecules, :func:`second_look_centres`), NaN for the others, which the second look never counts."""
    centres = np.asarray(centres, dtype=bool)
    out = np.full((len(centres), classifier.pca_components.shape[0]), np.nan)
    need = np.flatnonzero(centres)
    if len(need):
        out[need] = classifier.reduce(classifier.soap_features(positions, cell, pbc, centers=need))
    return out


def second_look(classifier: Classifier, codes: np.ndarray, reduced: np.ndarray, positions: np.ndarray,
                early_positions: np.ndarray | None, cell: np.ndarray | None, pbc, metric: str,
                threshold: float, pairs: Pairs | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """What the repeat test reads at its second look on a whole frame: (vectors, positions) after
    :data:`REPEAT_TEST_ITERATIONS` (``early_positions``, from ``denoise(snapshot=...)``) for
    :func:`find_other_crystal`'s ``early``; None where the denoiser ran no further than that."""
    if early_positions is None:
        return None
    if pairs is None:
        pairs = liquid_pairs(codes, positions, cell, pbc)
    misses = first_look_misses(codes, reduced, metric, threshold, pairs)
    centres = second_look_centres(codes, reduced, misses, metric, threshold, pairs)
    return repeat_vectors(classifier, centres, early_positions, cell, pbc), early_positions


def mark_other_crystal(codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``codes`` with every liquid centre of at least :data:`MIN_REPEATS` repeats turned into ``OTHER_CRYSTAL``."""
    codes = np.asarray(codes, dtype=np.int32).copy()
    n = len(counts)
    codes[:n][(codes[:n] == LIQUID) & (counts >= MIN_REPEATS)] = OTHER_CRYSTAL
    return codes


def find_other_crystal(
    codes: np.ndarray,
    reduced: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc,
    metric: str,
    threshold: float,
    early: tuple[np.ndarray, np.ndarray] | None = None,
    pairs: Pairs | None = None,
) -> np.ndarray:
    """The "other crystal" step for the first ``n`` = ``len(codes)`` molecules of a configuration: a whole
    (periodic) frame offline, or the LAMMPS compute's open cloud of local atoms and their ghosts. With
    ``early`` (vectors and positions after :data:`REPEAT_TEST_ITERATIONS`), a molecule repeats where it
    does at either set of positions.

    Parameters
    ----------
    codes : array_like of int, shape (n,)
        Phase codes of the centres after the boundary step (0: liquid).
    reduced : array_like, shape (N, k)
        The classifier's reduced SOAP vectors of every molecule (``Classifier.reduce``); NaN rows (none
        computed) never count as a repeat.
    positions : array_like, shape (N, 3)
        The classified (denoised) positions, Angstrom, the centres first.
    cell, pbc
        Cell vectors as rows (``None``: no box) and periodicity.
    metric, threshold
        The classifier's metric and the ice/liquid threshold it used.

    Returns
    -------
    numpy.ndarray of int32, shape (n,)
        ``codes`` with liquid molecules that repeat their environment labelled ``OTHER_CRYSTAL``.
    """
    codes = np.asarray(codes, dtype=np.int32)
    liquid = codes == LIQUID
    if not liquid.any():  # nothing to decide (a crystal the classifier knows): skip the neighbour search
        return codes.copy()
    if pairs is None:
        pairs = liquid_pairs(codes, positions, cell, pbc)
    counts = repeat_counts(np.asarray(reduced, dtype=np.float64), pairs, metric, threshold, len(codes))
    if early is not None:
        # the second look: around the centres that have a vector there (second_look_centres) only
        early_reduced, early_positions = np.asarray(early[0], dtype=np.float64), early[1]
        looked = liquid & np.isfinite(early_reduced[: len(codes)]).all(axis=1)
        if looked.any():
            second = centre_pairs(np.asarray(early_positions, dtype=np.float64), cell, pbc, np.flatnonzero(looked),
                                  RADIUS)
            counts = np.maximum(counts, repeat_counts(early_reduced, second, metric, threshold, len(codes)))
    return mark_other_crystal(codes, counts)


def join_enclosed(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float,
    n_centres: int | None = None,
) -> np.ndarray:
    """Liquid-labelled centres enclosed by other crystal join it (see the module docstring).

    Parameters
    ----------
    codes : array_like of int, shape (N,)
        The code of every molecule after the repeat test (:func:`find_other_crystal`): a whole frame, or the
        LAMMPS compute's open cloud with the ghosts' codes from their owners.
    positions : array_like, shape (N, 3)
        The classified (denoised) positions, Angstrom, the centres first.
    cell, pbc
        Cell vectors as rows (``None``: an open cloud) and periodicity.
    shell : float
        The first-shell radius, Angstrom (the model's ``BoundarySettings.shell``).
    n_centres : int, optional
        How many of the first molecules to decide for (default: all).

    Returns
    -------
    numpy.ndarray of int32, shape (n_centres,)
        Their codes, enclosed liquid-labelled ones ``OTHER_CRYSTAL``; all decide on ``codes`` as given.
    """
    codes = np.asarray(codes, dtype=np.int32)
    n = len(codes) if n_centres is None else int(n_centres)
    out = codes[:n].copy()
    liquid = np.flatnonzero(out == LIQUID)
    if len(liquid) == 0 or not np.any(codes == OTHER_CRYSTAL):  # no liquid centre, or nothing to enclose one
        return out
    positions = np.asarray(positions, dtype=np.float64)
    i, j = centre_pairs(positions, cell, pbc, liquid, shell)
    neighbours = np.bincount(i, minlength=n)[:n]
    other = np.bincount(i[codes[j] == OTHER_CRYSTAL], minlength=n)[:n]
    enclosed = (out == LIQUID) & (neighbours >= MIN_ENCLOSING_NEIGHBOURS) & (other >= ENCLOSED_FRACTION * neighbours)
    out[enclosed] = OTHER_CRYSTAL
    return out


def phase_inside_other_crystal(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, n_centres: int | None = None
) -> np.ndarray:
    """True for the phase-labelled centres whose crystal-labelled molecules within :data:`RADIUS` (themselves
    included) are more than :data:`OTHER_MAJORITY` other crystal (arguments as for :func:`join_enclosed`).
    The cloud of the LAMMPS compute reaches the SOAP reach beyond its centres, which covers the radius."""
    codes = np.asarray(codes, dtype=np.int32)
    n = len(codes) if n_centres is None else int(n_centres)
    phase = np.flatnonzero(codes[:n] > LIQUID)
    found = np.zeros(n, dtype=bool)
    if len(phase) == 0 or not np.any(codes == OTHER_CRYSTAL):
        return found
    i, j = centre_pairs(np.asarray(positions, dtype=np.float64), cell, pbc, phase, RADIUS)
    crystal = (codes[j] > LIQUID) | (codes[j] == OTHER_CRYSTAL)
    # the centre itself is one crystal-labelled molecule, not other crystal
    total = np.bincount(i[crystal], minlength=n)[:n] + 1
    other = np.bincount(i[codes[j] == OTHER_CRYSTAL], minlength=n)[:n]
    found[phase] = other[phase] > OTHER_MAJORITY * total[phase]
    return found


def join_phase_inside(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, n_centres: int | None = None
) -> np.ndarray:
    """The centres' codes (arguments as for :func:`join_enclosed`), phase labels inside other crystal made other
    crystal (:func:`phase_inside_other_crystal`)."""
    codes = np.asarray(codes, dtype=np.int32)
    out = codes[:len(codes) if n_centres is None else int(n_centres)].copy()
    out[phase_inside_other_crystal(codes, positions, cell, pbc, n_centres)] = OTHER_CRYSTAL
    return out


def enclose_and_isolate(
    codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float,
    n_centres: int | None = None,
) -> np.ndarray:
    """The centres' codes (arguments as for :func:`join_enclosed`): liquid-labelled centres enclosed by other
    crystal join it (:func:`join_enclosed`), and crystal-labelled centres isolated in liquid, one or two, become
    liquid (``lone_crystal.isolated_in_liquid``), whatever the first said. Both decide on the codes as given."""
    out = join_enclosed(codes, positions, cell, pbc, shell, n_centres)
    out[isolated_in_liquid(codes, positions, cell, pbc, shell, n_centres)] = LIQUID
    return out


def settle_shells(codes: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, shell: float) -> np.ndarray:
    """The step's last part on a whole frame, on the repeat test's codes (arguments as for :func:`join_enclosed`):
    phase labels inside other crystal join it (:func:`join_phase_inside`), then, on those codes, liquid labels
    enclosed by other crystal join it and crystal labels isolated in liquid become liquid
    (:func:`enclose_and_isolate`). In that order, so that a molecule the repeat test missed inside a crystal
    without a reference, whose neighbours carried a phase label the first part turns into other crystal, is
    enclosed by other crystal (the twelve-phase model without ice IV left 1.7% of our IV MD liquid that way,
    each such molecule with 7-11 first-shell neighbours, all or all but one or two other crystal in the end;
    0.39% in this order).
    Whether a label is crystal or liquid, all ``isolated_in_liquid`` reads, the first part does not change.
    The LAMMPS compute runs the two parts apart, with the ghosts' codes sent between them."""
    joined = join_phase_inside(codes, positions, cell, pbc)
    return enclose_and_isolate(joined, positions, cell, pbc, shell)


def label_other_crystal(
    codes: np.ndarray, reduced: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc, metric: str,
    threshold: float, shell: float, early: tuple[np.ndarray, np.ndarray] | None = None, pairs: Pairs | None = None,
) -> np.ndarray:
    """The whole "other crystal" step on a whole frame: the repeat test (:func:`find_other_crystal`; with
    ``early``, the vectors and positions after :data:`REPEAT_TEST_ITERATIONS` too), then the first-shell
    checks of :func:`settle_shells` (molecules enclosed by other crystal; crystal labels isolated in liquid);
    ``pairs``: :func:`liquid_pairs`, where already found. The LAMMPS compute runs the two apart, with the
    ghosts' codes sent between them."""
    marked = find_other_crystal(codes, reduced, positions, cell, pbc, metric, threshold, early, pairs)
    return settle_shells(marked, positions, cell, pbc, shell)
