"""The site census: a crystal of a phase holds that phase's sites in that phase's proportions.

Why. The classifier names a molecule by the nearest reference environment within the ice/liquid threshold.
A crystal without a reference whose environments lie near those of some reference takes that reference's
name, and the boundary step then grows the name over the rest of it: the twelve-phase model without its ice VI
references calls our ice VI MD 80% "XII", without XII 90% "V", without sII 100% "sH"
(``benchmarks/other_crystal.py --leave-one-out``). Each molecule's environment is near *some* site of the
named phase, but not in the proportions the phase has: in ice XII two thirds of the molecules sit on one site
and one third on the other; the VI molecules called XII all sit on the second.

The test. Each phase's distinct sites (Wyckoff orbits, as the classifier sees them) and their shares come from
its ideal reference cell (:func:`fit_site_table`). Every molecule the classifier names (its first look) is
given the nearest site of its phase (:func:`site_types`). After the boundary step, for each ice cluster and
each phase with more than one site, the named molecules' site shares are compared with the phase's own by
total variation (half the sum of absolute differences; 0: the same proportions, 1: no site in common). Where
at least :data:`MIN_NAMED` molecules are counted and the distance exceeds :data:`MAX_SITE_DISTANCE`, the
cluster's molecules of that phase become other crystal (:func:`census`): the crystal is ordered, but not that
phase. Phases with one site (Ih, Ic, VII) have nothing to count, and no threshold or reference changes.

Measured (docs/validation.md, "The site census"): in our MD of every phase of the twelve-phase model at 250 K,
of sI at 268 K and at its interface with liquid, and of VI at 2 GPa, the distance is at most 0.065 (XII,
III, IV, V: thermal motion moves a few molecules to the neighbouring site); the wrong names above give
0.39-0.71.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import ClassifierError
from .phases import OTHER_CRYSTAL

if TYPE_CHECKING:  # classifier.py imports this module
    from .classifier import Classifier
    from .references import Reference

#: PCA-space distance below which two environments of one ideal cell are one site. GenIce2's cells are not
#: exactly symmetric: environments of one Wyckoff orbit lie up to 4.5 apart in every phase of the shipped
#: models, distinct sites at least 10.1 apart (ice II), and the ice/liquid thresholds are 7.7-8.2.
SAME_SITE = 6.0
#: molecules of one phase in one cluster: fewer are too few to count (a site of 13% share, sI's smallest, is
#: then expected 6.5 times)
MIN_NAMED = 50
#: total variation distance between a cluster's site shares and its phase's above which the name is wrong:
#: real crystals gave at most 0.065, wrong names 0.39-0.71; chance alone in a sample of MIN_NAMED gives
#: about 0.1 (standard error of the shares)
MAX_SITE_DISTANCE = 0.25


@dataclass
class SiteTable:
    """The distinct sites of each phase of a model: ``features`` (S, k) in the classifier's PCA space,
    ``codes`` (S,) phase code of each, ``shares`` (S,) the share of the phase's molecules on it (each phase's
    shares sum to 1). Empty: no census (a model file written before it existed)."""

    features: np.ndarray
    codes: np.ndarray
    shares: np.ndarray

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int32).ravel()
        self.features = np.asarray(self.features, dtype=np.float64)
        if self.features.ndim != 2:
            raise ClassifierError(f"site features must be a 2-d array, got shape {self.features.shape}")
        self.shares = np.asarray(self.shares, dtype=np.float64)
        if not (len(self.features) == len(self.codes) == len(self.shares)):
            raise ClassifierError(f"site table arrays disagree: {len(self.features)} sites, {len(self.codes)} "
                                  f"codes, {len(self.shares)} shares")

    @classmethod
    def empty(cls, n_components: int = 0) -> "SiteTable":
        return cls(np.zeros((0, n_components)), np.zeros(0, dtype=np.int32), np.zeros(0))

    def __len__(self) -> int:
        return len(self.codes)

    def counted_codes(self) -> np.ndarray:
        """Phase codes with more than one site: the ones the census counts."""
        codes, n = np.unique(self.codes, return_counts=True)
        return codes[n > 1]


def distinct_rows(x: np.ndarray, rel_tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each, how many rows) of the rows of ``x`` that are equal to ``rel_tol`` of its
    largest value: symmetry-equivalent sites of an ideal cell have identical SOAP vectors."""
    scale = np.abs(x).max() or 1.0
    _, first, counts = np.unique(np.round(x / (scale * rel_tol)).astype(np.int64), axis=0, return_index=True,
                                 return_counts=True)
    return first, counts


def merged_sites(features: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Single-linkage merge of environments closer than :data:`SAME_SITE`: (count-weighted mean features,
    summed counts) of each merged site, in order of first appearance."""
    n = len(features)
    group = np.arange(n)
    for i in range(n):
        close = np.flatnonzero(np.linalg.norm(features - features[i], axis=1) < SAME_SITE)
        for g in np.unique(group[close]):
            group[group == g] = group[i]
    _, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.ravel()]
    weights = np.bincount(inverse, weights=counts)
    means = np.stack([np.average(features[inverse == k], axis=0, weights=counts[inverse == k])
                      for k in range(len(weights))])
    return means, weights


def fit_site_table(classifier: "Classifier", references: "list[Reference]") -> SiteTable:
    """The sites of each reference (``references.Reference``, in code order) from its ideal cell, in
    ``classifier``'s PCA space (``Classifier``; its scaler and PCA already fitted)."""
    from .references import supercell

    if len(references) != len(classifier.names):
        raise ClassifierError(f"{len(references)} references for a classifier of {len(classifier.names)} phases")
    descriptor = classifier.soap.descriptor(periodic=True)
    raw = []
    for ref in references:
        atoms = supercell(ref.atoms, 2.0 * classifier.soap.r_cut + 1.0)
        raw.append(descriptor.create(atoms.positions, atoms.cell.array, atoms.pbc))
    return site_table_of(classifier, raw)


def site_table_of(classifier: "Classifier", raw_features: list[np.ndarray]) -> SiteTable:
    """The site table from the raw SOAP vectors of every oxygen of each phase's ideal supercell (code order)."""
    features, codes, shares = [], [], []
    for code, raw in enumerate(raw_features, start=1):
        first, counts = distinct_rows(raw)
        means, weights = merged_sites(classifier.reduce(raw[first]), counts.astype(np.float64))
        features.append(means)
        codes.append(np.full(len(weights), code, dtype=np.int32))
        shares.append(weights / weights.sum())
    return SiteTable(np.concatenate(features), np.concatenate(codes), np.concatenate(shares))


def site_types(table: SiteTable, reduced: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(n,) int32: the index in ``table`` of the nearest site of each molecule's phase (``codes``, the
    classifier's), by Euclidean distance in PCA space; -1 where the phase has one site or none, or the code is
    not a phase."""
    codes = np.asarray(codes)
    out = np.full(len(codes), -1, dtype=np.int32)
    for code in table.counted_codes():
        rows = np.flatnonzero(codes == code)
        if len(rows) == 0:
            continue
        mine = np.flatnonzero(table.codes == code)
        d = np.linalg.norm(np.asarray(reduced)[rows][:, None, :] - table.features[mine][None, :, :], axis=2)
        out[rows] = mine[d.argmin(axis=1)]
    return out


def count_rows(keep: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    """(m, len(columns) + 1) int64 rows: each distinct combination of ``columns`` over the molecules ``keep``
    selects, and how many molecules have it (the censuses' counts, which each rank of the LAMMPS compute sends
    to all)."""
    keep = np.asarray(keep, dtype=bool)
    keys = np.stack([np.asarray(c)[keep] for c in columns], axis=1).astype(np.int64)
    if len(keys) == 0:
        return np.zeros((0, len(columns) + 1), dtype=np.int64)
    keys, counts = np.unique(keys, axis=0, return_counts=True)
    return np.column_stack([keys, counts]).astype(np.int64)


def site_count_rows(cluster_ids: np.ndarray, sites: np.ndarray) -> np.ndarray:
    """(m, 3) int64 rows (cluster ID, site, molecules) over the molecules with a cluster (ID > 0) and a site
    (>= 0)."""
    return count_rows((np.asarray(cluster_ids) > 0) & (np.asarray(sites) >= 0), cluster_ids, sites)


def foreign_rows(table: SiteTable, rows: np.ndarray) -> np.ndarray:
    """(m,) bool for rows (cluster ID, site, molecules), several rows of one (cluster, site) summed: True where
    the row's cluster holds its site's phase in proportions that are not the phase's (see the module)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    out = np.zeros(len(rows), dtype=bool)
    if len(rows) == 0:
        return out
    if rows[:, 1].min() < 0 or rows[:, 1].max() >= len(table):
        raise ClassifierError(f"site index outside 0..{len(table) - 1}")
    phase = table.codes[rows[:, 1]]
    groups, inverse = np.unique(np.stack([rows[:, 0], phase], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g, (_, code) in enumerate(groups):
        mine = inverse == g
        per_site = np.bincount(rows[mine, 1], weights=rows[mine, 2], minlength=len(table))
        sites = table.codes == code
        named = per_site[sites].sum()
        if named < MIN_NAMED:
            continue
        distance = 0.5 * np.abs(per_site[sites] / named - table.shares[sites]).sum()
        out[mine] = distance > MAX_SITE_DISTANCE
    return out


def foreign_groups(table: SiteTable, sites: np.ndarray, cluster_ids: np.ndarray) -> set[tuple[int, int]]:
    """The (cluster ID, phase code) pairs whose named molecules hold the phase's sites in proportions that are
    not the phase's; ``sites`` from :func:`site_types`, ``cluster_ids`` the ice clusters (0: none)."""
    rows = site_count_rows(cluster_ids, sites)
    foreign = rows[foreign_rows(table, rows)]
    return set(zip(foreign[:, 0].tolist(), table.codes[foreign[:, 1]].tolist()))


def other_crystal_groups(codes: np.ndarray, cluster_ids: np.ndarray, groups: set[tuple[int, int]]) -> np.ndarray:
    """``codes`` with the molecules of each (cluster ID, phase code) in ``groups`` made other crystal."""
    out = np.array(codes, dtype=np.int32)
    ids = np.asarray(cluster_ids)
    for cluster, code in groups:
        out[(ids == cluster) & (out == code)] = OTHER_CRYSTAL
    return out


def census(table: SiteTable, codes: np.ndarray, sites: np.ndarray, cluster_ids: np.ndarray) -> np.ndarray:
    """``codes`` (after the boundary step) with the molecules of each foreign (cluster, phase) made other
    crystal; ``sites`` from :func:`site_types` on the classifier's codes, ``cluster_ids`` the ice clusters of
    ``codes`` (0: none)."""
    return other_crystal_groups(codes, cluster_ids, foreign_groups(table, sites, cluster_ids))
