"""The site census (site_census.py): each phase's sites and shares, and clusters whose shares are not their phase's."""

from fractions import Fraction

import numpy as np
import pytest

from icephase_lmp.errors import ClassifierError
from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL
from icephase_lmp.site_census import (MAX_SITE_DISTANCE, MIN_NAMED, SiteTable, census, foreign_rows,
                                      site_count_rows, site_types)

#: Wyckoff multiplicities per unit cell (International Tables; the phases' published structures): the share of
#: each distinct site, independent of GenIce2 and of our SOAP
CRYSTALLOGRAPHY = {
    "Ih": [1], "Ic": [1], "VII": [1],
    "II": [Fraction(6, 12), Fraction(6, 12)],  # two 18f orbits of the hexagonal cell
    "III": [Fraction(4, 12), Fraction(8, 12)],  # P4(1)2(1)2: 4a and 8b
    "VI": [Fraction(2, 10), Fraction(8, 10)],  # P4(2)/nmc: 2a and 8g
    "sI": [Fraction(6, 46), Fraction(16, 46), Fraction(24, 46)],  # Pm-3n: 6c, 16i, 24k
}


def test_each_phase_has_its_crystallographic_sites_and_shares(classifier):
    table = classifier.sites
    for code, name in enumerate(classifier.names, start=1):
        shares = sorted(table.shares[table.codes == code])
        assert np.allclose(shares, sorted(float(f) for f in CRYSTALLOGRAPHY[name])), (name, shares)
    assert set(classifier.names[c - 1] for c in table.counted_codes()) == {"II", "III", "VI", "sI"}


def test_a_saved_classifier_keeps_its_sites_and_an_old_file_has_none(classifier, tmp_path):
    from dataclasses import replace

    from icephase_lmp.classifier import Classifier

    path = tmp_path / "c.npz"
    classifier.save(path)
    again = Classifier.load(path)
    assert np.array_equal(again.sites.codes, classifier.sites.codes)
    assert np.allclose(again.sites.features, classifier.sites.features)
    assert np.allclose(again.sites.shares, classifier.sites.shares)
    old = tmp_path / "old.npz"
    replace(classifier, sites=SiteTable.empty(classifier.ref_features.shape[1])).save(old)
    assert len(Classifier.load(old).sites) == 0


def test_molecules_of_an_ideal_crystal_find_their_own_sites(classifier, references):
    from icephase_lmp.references import supercell

    names = [r.name for r in references]
    for name in ("sI", "VI", "III"):
        code = names.index(name) + 1
        atoms = supercell(references[code - 1].atoms, 18.0)
        reduced = classifier.reduce(classifier.soap_features(atoms.positions, atoms.cell.array, (True,) * 3))
        sites = site_types(classifier.sites, reduced, np.full(len(atoms), code))
        shares = np.bincount(sites, minlength=len(classifier.sites))[classifier.sites.codes == code] / len(atoms)
        assert np.allclose(shares, classifier.sites.shares[classifier.sites.codes == code], atol=1e-9), name
    # one-site phases, liquid and other crystal have no site
    ih = names.index("Ih") + 1
    assert np.all(site_types(classifier.sites, reduced[:3], np.array([ih, LIQUID, OTHER_CRYSTAL])) == -1)


def three_sites() -> SiteTable:
    """Phase 1 with sites 0, 1, 2 (shares 0.2, 0.3, 0.5); phase 2 with one site (3)."""
    return SiteTable(np.eye(4), np.array([1, 1, 1, 2]), np.array([0.2, 0.3, 0.5, 1.0]))


def test_foreign_rows_compare_a_clusters_shares_with_its_phases():
    table = three_sites()
    rows = np.array([
        [7, 0, 20], [7, 1, 30], [7, 2, 50],  # cluster 7: the phase's own shares
        [8, 2, 100],  # cluster 8: every molecule on one site (distance 0.5)
        [9, 0, 10], [9, 2, 20],  # cluster 9: too few to count
        [5, 2, 30], [5, 2, 30],  # cluster 5: two ranks' rows of site 2, summed (60: enough)
    ])
    assert foreign_rows(table, rows).tolist() == [False] * 3 + [True] + [False] * 2 + [True] * 2
    # at the limit: a distance just below MAX_SITE_DISTANCE is the phase, just above is not
    n = 1000
    below = round(n * (MAX_SITE_DISTANCE - 0.01))
    above = round(n * (MAX_SITE_DISTANCE + 0.01))
    for moved, foreign in ((below, False), (above, True)):
        counts = np.array([200, 300 + moved, 500 - moved])
        assert foreign_rows(table, np.column_stack([[1, 1, 1], [0, 1, 2], counts])).tolist() == [foreign] * 3
    assert 30 < MIN_NAMED <= 60
    with pytest.raises(ClassifierError, match="site index"):
        foreign_rows(table, np.array([[1, 9, 100]]))


def test_census_turns_only_the_foreign_cluster_and_phase_into_other_crystal():
    table = three_sites()
    n = 2 * MIN_NAMED
    # cluster 1: phase 1 all on site 2; cluster 2: phase 1 in its own shares; both also hold phase 2
    codes = np.array([1] * n + [2] * 5 + [1] * n + [2] * 5 + [LIQUID] * 3, dtype=np.int32)
    sites = np.array([2] * n + [-1] * 5 + [0] * (n // 5) + [1] * (3 * n // 10) + [2] * (n // 2) + [-1] * 5 + [-1] * 3)
    ids = np.array([1] * (n + 5) + [2] * (n + 5) + [0] * 3)
    out = census(table, codes, sites, ids)
    expected = codes.copy()
    expected[:n] = OTHER_CRYSTAL
    assert out.tolist() == expected.tolist()
    assert site_count_rows(ids, sites).tolist() == [[1, 2, n], [2, 0, n // 5], [2, 1, 3 * n // 10], [2, 2, n // 2]]
