import numpy as np
import pytest

from icephase_lmp.calibrate import calibrate_threshold, plot_histogram
from icephase_lmp.errors import CalibrationError


def test_separated_distributions_take_the_middle_of_the_gap():
    cal = calibrate_threshold(np.array([1.0, 2.0, 3.0]), np.array([7.0, 9.0]))
    assert cal.separated and cal.threshold == 5.0 and cal.gap == 4.0
    assert cal.ice_errors == 0 and cal.liquid_errors == 0


def test_overlapping_distributions_minimise_balanced_error():
    rng = np.random.default_rng(0)
    ice, liquid = rng.normal(10, 1, 5000), rng.normal(14, 1, 5000)
    cal = calibrate_threshold(ice, liquid)
    assert not cal.separated and cal.gap < 0
    assert cal.threshold == pytest.approx(12.0, abs=0.15)  # equal widths: the crossing is the midpoint


def test_histogram_png(tmp_path):
    cal = calibrate_threshold(np.array([1.0, 2.0]), np.array([5.0, 6.0]))
    out = plot_histogram(np.array([1.0, 2.0]), np.array([5.0, 6.0]), cal, tmp_path / "h.png", "euclidean")
    assert out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_needs_both_classes():
    with pytest.raises(CalibrationError, match="both"):
        calibrate_threshold(np.array([]), np.array([1.0]))


def test_noisy_references_never_put_oxygens_too_close():
    """i.i.d. noise of 0.3 A in ice VII puts pairs below MIN_OXYGEN_DISTANCE; the calibration's noisy
    references redraw those, and keep the noise's size everywhere else."""
    from icephase_lmp.cli import _noisy_water
    from icephase_lmp.geometry import too_close
    from icephase_lmp.phases import MIN_OXYGEN_DISTANCE
    from icephase_lmp.references import builtin_reference, supercell

    atoms = supercell(builtin_reference("VII").atoms, 24.0)
    cell, pbc = atoms.cell.array, (True, True, True)
    rng = np.random.default_rng(0)
    plain = atoms.positions + rng.normal(0.0, 0.3, atoms.positions.shape)
    assert too_close(plain, cell, pbc, MIN_OXYGEN_DISTANCE).any()  # the problem is real at this noise
    noisy = _noisy_water(atoms.positions, cell, 0.3, rng)
    assert not too_close(noisy, cell, pbc, MIN_OXYGEN_DISTANCE).any()
    assert np.std(noisy - atoms.positions) == pytest.approx(0.3, rel=0.05)
