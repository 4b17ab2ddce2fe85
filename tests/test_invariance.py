"""Property tests (hypothesis): the labels of a periodic configuration do not depend on how it is written down.

Translation, moving single atoms by whole box vectors (unwrapped coordinates), another basis of the same
lattice (a cell tilted by whole box lengths), rotating the frame together with its cell, and replicating the
cell 2 x 2 x 2 describe the same system, so the shipped model must give the same labels (and distances, to
float32 precision). The system is one unit cell of ice Ih (16 oxygens) with 0.15 A noise: small enough for
a few examples per property to stay cheap.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

PBC = (True, True, True)
#: few examples, reproducible, no example database written into the checkout
CHEAP = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pipeline(shipped_model):
    from icephase_lmp.pipeline import Pipeline

    return Pipeline(shipped_model)


@pytest.fixture(scope="module")
def base(pipeline):
    """(positions, cell, result) of the untransformed configuration."""
    from icephase_lmp.references import builtin_reference

    atoms = builtin_reference("Ih").atoms
    rng = np.random.default_rng(21)
    pos = atoms.positions + rng.normal(0.0, 0.15, atoms.positions.shape)
    cell = atoms.cell.array
    result = pipeline.run(pos, cell, PBC)
    assert result.n_too_close == 0
    return pos, cell, result


def assert_same(result, reference, threshold: float, tile: int = 1) -> None:
    """Same labels and distances (float32 network: ~1e-5 relative); an atom within 1e-3 of the threshold
    may flip."""
    codes, dist = np.tile(reference.codes, tile), np.tile(reference.distances, tile)
    np.testing.assert_allclose(result.distances, dist, rtol=1e-3, atol=1e-3)
    borderline = np.abs(dist - threshold) < 1e-3 * threshold
    assert np.array_equal(result.codes[~borderline], codes[~borderline])


def assert_inside(positions: np.ndarray, cell: np.ndarray) -> None:
    """The positions a run hands back (denoised) lie in the cell."""
    frac = positions @ np.linalg.inv(cell)
    assert np.all((frac >= -1e-9) & (frac < 1 + 1e-9))


def test_base_configuration_is_mostly_ice_ih(base):
    _, _, result = base
    assert (result.codes == 1).mean() > 0.5  # so the properties below compare real labels


vectors = st.tuples(*[st.floats(-40.0, 40.0, allow_nan=False)] * 3)


@CHEAP
@given(shift=vectors)
def test_translation(pipeline, base, shift):
    pos, cell, reference = base
    result = pipeline.run(pos + np.array(shift), cell, PBC)
    assert_same(result, reference, pipeline.threshold)
    assert_inside(result.positions, cell)


@CHEAP
@given(images=st.lists(st.tuples(*[st.integers(-3, 3)] * 3), min_size=16, max_size=16))
def test_image_shifts_of_single_atoms(pipeline, base, images):
    pos, cell, reference = base
    result = pipeline.run(pos + np.array(images, dtype=float) @ cell, cell, PBC)
    assert_same(result, reference, pipeline.threshold)


@CHEAP
@given(tilt=st.tuples(*[st.integers(-2, 2)] * 3))
def test_another_basis_of_the_same_lattice(pipeline, base, tilt):
    """b + i a, c + j a + k b: a triclinic cell tilted by whole box lengths (tilt 1 = one box length)."""
    pos, cell, reference = base
    i, j, k = tilt
    tilted = np.array([cell[0], cell[1] + i * cell[0], cell[2] + j * cell[0] + k * cell[1]])
    result = pipeline.run(pos, tilted, PBC)
    assert_same(result, reference, pipeline.threshold)
    assert_inside(result.positions, tilted)


@CHEAP
@given(q=st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 4))
def test_rotation_of_the_frame_with_its_cell(pipeline, base, q):
    pos, cell, reference = base
    norm = np.linalg.norm(q)
    assume(norm > 0.1)
    w, x, y, z = np.array(q) / norm
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    result = pipeline.run(pos @ rotation.T, cell @ rotation.T, PBC)
    assert_same(result, reference, pipeline.threshold)


@settings(max_examples=2, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shift=vectors)
def test_replication_2x2x2(pipeline, base, shift):
    """Eight copies of the cell, in a cell twice as large (and translated): each copy labelled alike."""
    pos, cell, reference = base
    copies = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], dtype=float) @ cell
    big = (copies[:, None, :] + pos[None, :, :]).reshape(-1, 3) + np.array(shift)
    result = pipeline.run(big, 2.0 * cell, PBC)
    assert_same(result, reference, pipeline.threshold, tile=8)
