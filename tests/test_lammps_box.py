"""LAMMPS box maths (icephase_lmp.lammps_box): the restricted triclinic rotation, tilt reduction, dump bounds."""

from __future__ import annotations

import numpy as np
import pytest

from icephase_lmp.lammps_box import cell_from_dump_bounds, dump_box, reduce_tilts, restricted_triclinic


def random_cell(rng: np.random.Generator) -> np.ndarray:
    """A right-handed cell (rows, Angstrom) in a random orientation."""
    cell = np.diag(rng.uniform(8.0, 15.0, 3)) + rng.normal(0.0, 2.0, (3, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation keeps the cell right-handed
    return cell @ q if np.linalg.det(cell) > 0 else -cell @ q


@pytest.mark.parametrize("seed", range(5))
def test_restricted_triclinic_is_a_rotation_onto_a_lower_triangular_cell(seed):
    cell = random_cell(np.random.default_rng(seed))
    lammps_cell, rotation = restricted_triclinic(cell)
    assert np.all(np.triu(lammps_cell, 1) == 0.0) and np.all(np.diag(lammps_cell) > 0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(cell @ rotation, lammps_cell, atol=1e-12)


def test_reduce_tilts_keeps_the_lattice_and_makes_tilts_small():
    cell = np.array([[10.0, 0, 0], [5.0, 10.0, 0], [0.0, 6.0, 10.0]])
    reduced = reduce_tilts(cell)
    # the same lattice: an integer, unimodular change of basis
    change = reduced @ np.linalg.inv(cell)
    np.testing.assert_allclose(change, np.round(change), atol=1e-12)
    assert abs(np.linalg.det(np.round(change))) == 1
    assert abs(reduced[1, 0]) <= reduced[0, 0] / 2
    assert abs(reduced[2, 0]) + abs(reduced[2, 1]) == pytest.approx(6.0)  # c is already the shortest such


@pytest.mark.parametrize("cell", [np.diag([10.0, 11.0, 12.0]), np.array([[10.0, 0, 0], [2.0, 9.0, 0], [-1.0, 1.5, 8.0]])])
def test_dump_bounds_read_back_what_dump_box_writes(cell):
    origin = np.array([1.0, -2.0, 0.5])
    lines, positions = dump_box(cell, origin, (True, True, False), np.zeros((1, 3)))
    words = lines[0].split()[3:]
    style = "tilted" if words[:3] == ["xy", "xz", "yz"] else "orthogonal"
    assert words[-3:] == ["pp", "pp", "ff"]
    back, back_origin = cell_from_dump_bounds([[float(v) for v in line.split()] for line in lines[1:]], style)
    np.testing.assert_allclose(back, cell, atol=1e-8)
    np.testing.assert_allclose(back_origin, origin, atol=1e-8)
    np.testing.assert_array_equal(positions, np.zeros((1, 3)))  # a LAMMPS-form cell is not rotated


def test_general_triclinic_bounds_are_box_vectors_and_origin():
    cell, origin = cell_from_dump_bounds([[10.0, 0, 0, 1.0], [2.0, 9.0, 0, 2.0], [0, 1.0, 8.0, 3.0]], "general")
    np.testing.assert_array_equal(cell, [[10, 0, 0], [2, 9, 0], [0, 1, 8]])
    np.testing.assert_array_equal(origin, [1, 2, 3])
