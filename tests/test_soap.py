"""Our SOAP calculator (DScribe's compiled extension, called directly) against DScribe's public SOAP class."""

import numpy as np
import pytest
from ase import Atoms
from dscribe.descriptors import SOAP

from conftest import liquid_like
from icephase_lmp.classifier import SoapSettings
from icephase_lmp.soap import GtoSoap, gto_basis
from icephase_lmp.references import builtin_reference, supercell

SETTINGS = [SoapSettings(), SoapSettings(r_cut=6.0, n_max=8, l_max=6, sigma=0.5)]


def dscribe_soap(settings: SoapSettings, periodic: bool) -> SOAP:
    return SOAP(species=["O"], r_cut=settings.r_cut, n_max=settings.n_max, l_max=settings.l_max,
                sigma=settings.sigma, periodic=periodic)


def ours(settings: SoapSettings, periodic: bool) -> GtoSoap:
    return GtoSoap(settings.r_cut, settings.n_max, settings.l_max, settings.sigma, periodic)


@pytest.mark.parametrize("settings", SETTINGS)
def test_radial_basis_is_dscribes(settings):
    alphas, betas = gto_basis(settings.r_cut, settings.n_max, settings.l_max)
    ref = dscribe_soap(settings, periodic=True)
    np.testing.assert_array_equal(alphas, ref._alphas)
    np.testing.assert_array_equal(betas, ref._betas)


@pytest.mark.parametrize("settings", SETTINGS)
def test_periodic_boxes_give_dscribes_numbers_exactly(settings, rng):
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
        got = ours(settings, True).create(positions, box, pbc)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_open_cloud_with_centre_subset_gives_dscribes_numbers_exactly(rng):
    # as the plugin calls it: local atoms first (the centres), ghosts after, no box
    settings = SoapSettings()
    pos, _ = liquid_like(300, 1.0, rng)
    centres = np.arange(0, 300, 7)
    expected = dscribe_soap(settings, False).create(Atoms(numbers=np.full(300, 8), positions=pos),
                                                     centers=centres.tolist())
    got = ours(settings, False).create(pos, None, (False,) * 3, centres)
    np.testing.assert_array_equal(got, expected)
    assert ours(settings, False).create(pos, None, (False,) * 3, np.zeros(0, int)).shape == (0, expected.shape[1])
