"""Our SOAP calculator against DScribe's public SOAP class.

Two backends: our compiled kernel (a spline table of DScribe's radial functions; the default where it was
built) must agree with DScribe to rounding-level precision in double precision and to float32's in single
(the default), and the fallback (DScribe's own extension, called directly) must give DScribe's numbers exactly.
"""

import numpy as np
import pytest
from ase import Atoms
from dscribe.descriptors import SOAP

from conftest import liquid_like
from icephase_lmp import soap as soap_module
from icephase_lmp.classifier import SoapSettings
from icephase_lmp.soap import GtoSoap, gto_basis
from icephase_lmp.references import builtin_reference, supercell

SETTINGS = [SoapSettings(), SoapSettings(r_cut=6.0, n_max=8, l_max=6, sigma=0.5),
            SoapSettings(r_cut=4.0, n_max=5, l_max=3, sigma=0.7)]
#: our kernel in each precision, and DScribe's extension
BACKENDS = ["icephase", "icephase-double", "dscribe"]


def dscribe_soap(settings: SoapSettings, periodic: bool) -> SOAP:
    """DScribe's SOAP with its radial basis computed on one BLAS thread, as ours always is
    (test_the_radial_basis_does_not_depend_on_the_blas_thread_count)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return SOAP(species=["O"], r_cut=settings.r_cut, n_max=settings.n_max, l_max=settings.l_max,
                    sigma=settings.sigma, periodic=periodic)


def ours(settings: SoapSettings, periodic: bool, backend: str) -> GtoSoap:
    """``backend``: one of BACKENDS ("icephase" in the default single precision)."""
    name, _, precision = backend.partition("-")
    calc = GtoSoap(settings.r_cut, settings.n_max, settings.l_max, settings.sigma, periodic, backend=name,
                   precision=precision or None)
    assert calc.backend == name
    assert calc.precision == (precision or ("single" if name == "icephase" else "double"))
    return calc


def assert_matches(got: np.ndarray, expected: np.ndarray, backend: str) -> None:
    assert got.shape == expected.shape
    if backend == "dscribe":
        np.testing.assert_array_equal(got, expected)
        return
    # double: each feature to 1e-8 of the largest magnitude (seen: ~1e-10); single: to 1e-5 (seen: ~1e-6,
    # float32's rounding of ~90 terms). A wrong convention (a factor, the self term, a missing image) is off
    # by far more (a feature's own size)
    scale = np.abs(expected).max(axis=0) + 1e-300
    worst = np.abs(got - expected).max(axis=0).max() / scale.max()
    if backend == "icephase-double":
        assert worst < 1e-8
        assert (np.abs(got - expected) / scale).max() < 1e-6
    else:
        assert worst < 1e-5


def test_the_kernel_is_built_in_this_install():
    # the test environment installs with a C++ compiler: a silently failed build would make everything
    # SOAP 3.5-3.8x slower without a single other test noticing
    assert soap_module.BACKEND == "icephase"


@pytest.mark.parametrize("settings", SETTINGS)
def test_radial_basis_is_dscribes(settings):
    """Bit for bit (DScribe's computed on one BLAS thread, as ours always is)."""
    alphas, betas = gto_basis(settings.r_cut, settings.n_max, settings.l_max)
    ref = dscribe_soap(settings, periodic=True)
    np.testing.assert_array_equal(alphas, ref._alphas)
    np.testing.assert_array_equal(betas, ref._betas)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("settings", SETTINGS)
def test_periodic_boxes_give_dscribes_numbers(settings, backend, rng):
    ice = supercell(builtin_reference("Ih").atoms, 12.0)
    ice.positions += 0.2 * rng.standard_normal(ice.positions.shape)
    # a sheared (triclinic) box of liquid-like points, and a slab periodic in x and y only
    pos, cell = liquid_like(200, 1.0, rng)
    sheared = cell.copy()
    sheared[1, 0] = 0.3 * cell[0, 0]
    cases = [(ice.positions, ice.cell.array, (True,) * 3), (pos, sheared, (True,) * 3), (pos, cell, (True, True, False))]
    for positions, box, pbc in cases:
        expected = dscribe_soap(settings, True).create(Atoms(numbers=np.full(len(positions), 8), positions=positions,
                                                              cell=box, pbc=pbc))
        assert_matches(ours(settings, True, backend).create(positions, box, pbc), expected, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_box_counts_periodic_images_of_the_centre(backend, rng):
    # a box narrower than the reach (8.7 A): every atom sees several images of itself and of the others
    settings = SoapSettings()
    pos, cell = liquid_like(20, 1.0, rng)
    assert cell[0, 0] < settings.reach
    expected = dscribe_soap(settings, True).create(Atoms(numbers=np.full(20, 8), positions=pos, cell=cell, pbc=True))
    assert_matches(ours(settings, True, backend).create(pos, cell, (True,) * 3), expected, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_periodic_centre_subset(backend, rng):
    settings = SoapSettings()
    pos, cell = liquid_like(150, 1.0, rng)
    centres = np.array([149, 3, 77, 3])  # any order, repeats allowed: rows follow the request
    expected = dscribe_soap(settings, True).create(Atoms(numbers=np.full(150, 8), positions=pos, cell=cell, pbc=True),
                                                   centers=centres.tolist())
    assert_matches(ours(settings, True, backend).create(pos, cell, (True,) * 3, centres), expected, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_open_cloud_with_centre_subset_gives_dscribes_numbers(backend, rng):
    # as the plugin calls it: local atoms first (the centres), ghosts after, no box
    settings = SoapSettings()
    pos, _ = liquid_like(300, 1.0, rng)
    centres = np.arange(0, 300, 7)
    expected = dscribe_soap(settings, False).create(Atoms(numbers=np.full(300, 8), positions=pos),
                                                     centers=centres.tolist())
    calc = ours(settings, False, backend)
    assert_matches(calc.create(pos, None, (False,) * 3, centres), expected, backend)
    assert calc.create(pos, None, (False,) * 3, np.zeros(0, int)).shape == (0, expected.shape[1])


def test_an_isolated_atom_has_only_its_own_gaussian():
    # no neighbour within the reach: only the centre's own l = 0 term, as in DScribe
    settings = SoapSettings()
    pos = np.array([[0.0, 0.0, 0.0], [50.0, 0.0, 0.0]])
    expected = dscribe_soap(settings, False).create(Atoms(numbers=[8, 8], positions=pos))
    got = ours(settings, False, "icephase-double").create(pos, None, (False,) * 3)
    assert_matches(got, expected, "icephase-double")
    assert np.count_nonzero(got[0]) == settings.n_max * (settings.n_max + 1) // 2  # l = 0 block only


def test_the_radial_basis_does_not_depend_on_the_blas_thread_count():
    """The basis orthonormalises an ill-conditioned overlap matrix; BLAS on two threads changed it at
    ~1e-6, which moved a perfect crystal's distance to its reference by its own size. It is computed on one
    thread whatever the caller's thread pool, so every machine gets the reference features' basis."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        one = gto_basis(5.0, 12, 10)
    with threadpool_limits(limits=2):
        two = gto_basis(5.0, 12, 10)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


def test_single_precision_is_the_default_and_close_to_double(rng):
    """The default kernel runs in float32; its features are within float32 rounding of the double kernel's
    on ice and liquid, and far from them when the wrong table is used (so the comparison can fail)."""
    settings = SoapSettings()
    assert soap_module.PRECISION == "single"
    assert settings.descriptor(True).precision == "single"
    assert settings.descriptor(True)._table.dtype == np.float32
    ice = supercell(builtin_reference("Ih").atoms, 16.0)
    pos, cell = liquid_like(300, 1.0, rng)
    for positions, box in ((ice.positions + 0.1 * rng.standard_normal(ice.positions.shape), ice.cell.array),
                           (pos, cell)):
        single = ours(settings, True, "icephase").create(positions, box, (True,) * 3)
        double = ours(settings, True, "icephase-double").create(positions, box, (True,) * 3)
        assert single.dtype == np.float64  # the output stays float64 whatever the arithmetic
        rel = np.abs(single - double).max() / np.abs(double).max()
        assert 0.0 < rel < 1e-5
    other = GtoSoap(5.5, 12, 10, 1.0, True, precision="single").create(positions, box, (True,) * 3)
    assert np.abs(other - double).max() / np.abs(double).max() > 1e-3


def test_precision_must_be_known():
    with pytest.raises(ValueError, match="precision"):
        GtoSoap(5.0, 12, 10, 1.0, True, precision="half")


def test_the_kernel_takes_only_float32_or_float64_tables(rng):
    """The table's dtype picks the kernel's arithmetic; any other dtype, or a non-contiguous table, is refused
    with a message rather than read as the wrong numbers."""
    from icephase_lmp import _soap_kernel

    calc = ours(SoapSettings(), False, "icephase")
    pos, _ = liquid_like(50, 1.0, rng)
    args = (pos, np.arange(5), calc.reach)
    rest = (soap_module.TABLE_SPACING, calc.n_max, calc._self_term, calc._prel)
    good = _soap_kernel.power_spectrum(*args, calc._table, *rest)
    np.testing.assert_array_equal(good, calc.create(pos, None, (False,) * 3, np.arange(5)))
    with pytest.raises(ValueError, match="float64 or float32"):
        _soap_kernel.power_spectrum(*args, calc._table.astype(np.float16), *rest)
    with pytest.raises(ValueError, match="C-contiguous"):
        _soap_kernel.power_spectrum(*args, np.asfortranarray(calc._table), *rest)
