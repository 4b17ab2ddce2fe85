"""The ring census (ring_census.py): rings of the hydrogen-bond network, signatures, and clusters on foreign rings."""

from fractions import Fraction

import numpy as np
import pytest

from icephase_lmp.phases import LIQUID, OTHER_CRYSTAL
from icephase_lmp.references import genice_cell, supercell
from icephase_lmp.ring_census import (MAX_FOREIGN, UNCOUNTED, RingTable, bonds_of, foreign_ring_rows, is_network,
                                      ring_census, ring_count_rows, ring_flags, signatures, smallest_rings)
from icephase_lmp.site_census import MIN_NAMED

PERIODIC = (True, True, True)

#: the share of a clathrate's molecules by how many of their six bond angles close a ring of six (sI, sII) or
#: of four (sH), from the cages alone (independent of GenIce2 and of our code): sI's hexagons are the two faces
#: of each of its six 5^12 6^2 cages, shared in columns: 6 hexagons per 46 molecules, 36 corners, on the 6c
#: site (two each) and the 24k site (one each); sII's are the four faces of each of its eight 5^12 6^4 cages:
#: 16 hexagons, 96 corners, one on each 96g molecule; sH's squares are the three faces of each of its two
#: 4^3 5^6 6^3 cages, each shared with the cage across it: 3 squares, 12 corners, of 34 molecules
HEXAGON_CORNERS = {
    "CS1": {2: Fraction(6, 46), 1: Fraction(24, 46), 0: Fraction(16, 46)},
    "CS2": {1: Fraction(96, 136), 0: Fraction(40, 136)},
}
SQUARE_CORNERS = {"HS3": {1: Fraction(12, 34), 0: Fraction(22, 34)}}


def angle_ring_counts(atoms, size: int) -> np.ndarray:
    """Per molecule, how many of its bond angles have ``size`` as their smallest ring."""
    bonds = bonds_of(atoms.positions, atoms.cell.array, PERIODIC)
    rings, _ = smallest_rings(bonds, np.arange(len(atoms)))
    upper = np.triu(np.ones(rings.shape[1:], dtype=bool), 1)
    return ((rings == size) & upper).sum(axis=(1, 2))


@pytest.mark.parametrize("lattice, size, expected", [
    *((lat, 6, shares) for lat, shares in HEXAGON_CORNERS.items()),
    *((lat, 4, shares) for lat, shares in SQUARE_CORNERS.items()),
])
def test_the_rings_of_clathrates_are_those_of_their_cages(lattice, size, expected):
    atoms = supercell(genice_cell(lattice), 14.0)
    counts = angle_ring_counts(atoms, size)
    found = {int(k): Fraction(int(n), len(atoms)) for k, n in zip(*np.unique(counts, return_counts=True))}
    assert found == expected
    # every bond angle of a clathrate closes a ring of at most six: the cage faces
    bonds = bonds_of(atoms.positions, atoms.cell.array, PERIODIC)
    rings, _ = smallest_rings(bonds, np.arange(len(atoms)))
    upper = np.triu(np.ones(rings.shape[1:], dtype=bool), 1)
    assert np.all(bonds.degree == 4)
    assert np.all(rings[:, :4, :4][:, upper[:4, :4]] >= 4)


def test_every_angle_of_hexagonal_and_cubic_ice_closes_a_ring_of_six_in_any_periodic_cell():
    for lattice in ("1h", "1c"):
        unit = genice_cell(lattice)  # 16 and 8 molecules: rings cross the cell's faces
        assert np.all(angle_ring_counts(unit, 6) == 6), lattice
        big = supercell(unit, 20.0)
        assert np.all(angle_ring_counts(big, 6) == 6), lattice
        one = np.unique(signatures(bonds_of(unit.positions, unit.cell.array, PERIODIC), np.arange(len(unit))), axis=0)
        assert len(one) == 1
        assert np.array_equal(one, np.unique(signatures(bonds_of(big.positions, big.cell.array, PERIODIC),
                                                        np.arange(len(big))), axis=0))


def test_only_four_bonded_ices_with_a_clear_fifth_neighbour_are_networks():
    networks = {lat: is_network(genice_cell(lat).positions, genice_cell(lat).cell.array)
                for lat in ("1h", "1c", "CS1", "CS2", "HS3", "2", "3", "5", "6", "7", "12")}
    assert networks == {"1h": True, "1c": True, "CS1": True, "CS2": True, "HS3": True,
                        "2": False, "3": False, "5": False, "6": False, "7": False, "12": False}


def foreign_share(table: RingTable, code: int, lattice: str) -> float:
    atoms = supercell(genice_cell(lattice), 14.0)
    sig = signatures(bonds_of(atoms.positions, atoms.cell.array, PERIODIC), np.arange(len(atoms)))
    return float(table.foreign(np.full(len(atoms), code), sig).mean())


def test_sI_sII_and_sH_tables_tell_other_clathrates_apart(classifier):
    """The seven-phase classifier's ring table counts sI only (the one 4-bonded phase of several sites); its
    signatures are all of ideal sI's. TS-I and HS-I, built of sI's vertices, carry foreign signatures on 23% and
    40% of their molecules; the ideal sI cell on none."""
    sI = classifier.names.index("sI") + 1
    assert classifier.rings.counted_codes().tolist() == [sI]
    assert foreign_share(classifier.rings, sI, "CS1") == 0.0
    assert foreign_share(classifier.rings, sI, "TS1") > 2 * MAX_FOREIGN
    assert foreign_share(classifier.rings, sI, "HS1") > 3 * MAX_FOREIGN


def test_a_saved_classifier_keeps_its_ring_table_and_an_old_file_has_none(classifier, tmp_path):
    from dataclasses import replace

    from icephase_lmp.classifier import Classifier

    path = tmp_path / "c.npz"
    classifier.save(path)
    again = Classifier.load(path)
    assert np.array_equal(again.rings.codes, classifier.rings.codes)
    assert np.array_equal(again.rings.signatures, classifier.rings.signatures)
    old = tmp_path / "old.npz"
    replace(classifier, rings=RingTable.empty()).save(old)
    assert len(Classifier.load(old).rings) == 0


def test_flags_in_an_open_cloud_are_those_of_the_periodic_crystal(classifier):
    """What the LAMMPS compute hands over: a rank's molecules with the cloud around them, no periodic box.
    The molecules at least the SOAP reach + 0.5 A inside the cloud get the flags of the periodic crystal."""
    sI = classifier.names.index("sI") + 1
    for lattice, want in (("CS1", 0), ("TS1", None)):
        atoms = supercell(genice_cell(lattice), 40.0)
        codes = np.full(len(atoms), sI, dtype=np.int32)
        periodic = ring_flags(classifier.rings, atoms.positions, atoms.cell.array, PERIODIC, codes)
        centre = atoms.cell.array.sum(axis=0) / 2
        d = np.linalg.norm(atoms.positions - centre, axis=1)
        order = np.argsort(d)
        cloud = atoms.positions[order][d[order] < 20.0]
        n_centres = int(np.sum(d < 20.0 - classifier.soap.reach - 0.5))
        open_flags = ring_flags(classifier.rings, cloud, None, (False,) * 3, codes[:len(cloud)], n_centres)
        assert np.array_equal(open_flags, periodic[order][:n_centres]), lattice
        if want is not None:
            assert np.all(periodic == want)
        else:
            assert 0.2 < periodic.mean() < 0.3  # TS-I: 23% of its molecules


def bond_distance(bonds, source: int) -> np.ndarray:
    """Bonds from ``source`` to every molecule (breadth-first)."""
    dist = np.full(len(bonds.degree), -1)
    dist[source], front = 0, [source]
    while front:
        nxt = [j for i in front for j in bonds.neighbours[i] if j >= 0 and dist[j] < 0]
        nxt = list(dict.fromkeys(nxt))
        dist[nxt] = dist[front[0]] + 1
        front = nxt
    return dist


def test_a_molecule_whose_rings_reach_liquid_is_not_counted(classifier):
    """Only molecules whose signature sees crystal alone count: one liquid-labelled molecule in sI leaves out
    itself, its bonded neighbours and some molecules up to four bonds away (those whose or whose neighbours'
    smallest rings pass through it), and no molecule farther (a ring of six spans three bonds each way)."""
    sI = classifier.names.index("sI") + 1
    atoms = supercell(genice_cell("CS1"), 20.0)
    codes = np.full(len(atoms), sI, dtype=np.int32)
    bonds = bonds_of(atoms.positions, atoms.cell.array, PERIODIC)
    wet = 5
    dist = bond_distance(bonds, wet)
    for label in (LIQUID, OTHER_CRYSTAL):
        codes[wet] = label
        flags = ring_flags(classifier.rings, atoms.positions, atoms.cell.array, PERIODIC, codes)
        out = flags == UNCOUNTED
        assert np.all(flags[~out] == 0)
        if label == OTHER_CRYSTAL:  # other crystal is crystal around a molecule; itself it is of no phase
            assert np.flatnonzero(out).tolist() == [wet]
            continue
        assert np.all(out[dist <= 1]) and not np.any(out[dist > 4])
        assert np.any(out[dist == 4]) and not np.all(out[dist == 4])
    # a phase the table does not count is not counted
    ih = classifier.names.index("Ih") + 1
    assert np.all(ring_flags(classifier.rings, atoms.positions, atoms.cell.array, PERIODIC,
                             np.full(len(atoms), ih, dtype=np.int32)) == UNCOUNTED)


def test_foreign_ring_rows_need_enough_molecules_and_more_than_the_foreign_share():
    n = 10 * MIN_NAMED
    over = int(MAX_FOREIGN * n) + 1
    rows = np.array([
        [1, 7, 0, n - over], [1, 7, 1, over],                  # cluster 1: just over the share -> foreign
        [2, 7, 0, n - over + 1], [2, 7, 1, over - 1],          # cluster 2: at the share -> kept
        [3, 7, 1, MIN_NAMED - 1],                              # cluster 3: all foreign, too few to count
        [4, 7, 1, MIN_NAMED // 2], [4, 7, 1, MIN_NAMED // 2 + 1],  # cluster 4: from two ranks, summed
        [1, 10, 0, n],                                         # cluster 1, another phase: kept
    ])
    assert foreign_ring_rows(rows).tolist() == [True, True, False, False, False, True, True, False]
    assert foreign_ring_rows(np.zeros((0, 4))).tolist() == []


def test_ring_census_turns_only_the_foreign_cluster_and_phase_into_other_crystal():
    codes = np.array([7] * 60 + [7] * 60 + [1] * 5 + [LIQUID] * 3, dtype=np.int32)
    ids = np.array([1] * 60 + [2] * 60 + [1] * 5 + [0] * 3)
    flags = np.array([1] * 20 + [0] * 40 + [0] * 60 + [UNCOUNTED] * 8, dtype=np.int32)
    rows = ring_count_rows(ids, codes, flags)
    assert sorted(rows.tolist()) == [[1, 7, 0, 40], [1, 7, 1, 20], [2, 7, 0, 60]]
    out = ring_census(codes, flags, ids)
    assert np.all(out[:60] == OTHER_CRYSTAL)
    assert np.array_equal(out[60:], codes[60:])


def test_the_compiled_rings_are_the_numpy_ones(monkeypatch):
    """_soap_kernel.smallest_rings against the numpy meeting of halves: ideal and noisy clathrates and ice (0 to
    0.5 A of noise, where rings break and bonds come and go), one molecule in ten not crystal-labelled."""
    import icephase_lmp.ring_census as ring_census

    if ring_census._soap_kernel is None:
        pytest.skip("icephase_lmp._soap_kernel was not built")
    rng = np.random.default_rng(0)
    for lattice, sigma in (("CS1", 0.0), ("TS1", 0.1), ("HS3", 0.2), ("1h", 0.3), ("CS2", 0.5)):
        atoms = supercell(genice_cell(lattice), 14.0)
        pos = atoms.positions + sigma * rng.standard_normal(atoms.positions.shape)
        bonds = bonds_of(pos, atoms.cell.array, PERIODIC)
        crystal = rng.uniform(size=len(pos)) > 0.1
        centres = np.arange(len(pos))
        compiled = smallest_rings(bonds, centres, crystal)
        monkeypatch.setattr(ring_census, "COMPILED_RINGS", False)
        plain = smallest_rings(bonds, centres, crystal)
        monkeypatch.setattr(ring_census, "COMPILED_RINGS", True)
        assert np.array_equal(compiled[0], plain[0]) and np.array_equal(compiled[1], plain[1]), (lattice, sigma)
        assert 0 < np.count_nonzero(~compiled[1]) and np.count_nonzero(compiled[0]) > 0
