"""The SOAP power spectrum of O in O, from DScribe's compiled GTO extension.

Why not ``dscribe.descriptors.SOAP``: importing ``dscribe.descriptors`` imports every DScribe descriptor and,
through them, scikit-learn and scipy.stats. That costs 1.6 s per process (``import dscribe.ext`` after the
pipeline's own imports: 0.07 s; measured side by side, one run), and every ``icephase classify``, every
LAMMPS run's first call and every dask worker pays it. The numbers come from the same compiled extension
with the arguments ``dscribe.descriptors.SOAP`` passes it (DScribe 2.1: GTO radial basis, no weighting,
no averaging, no compression, one species), so ``tests/test_soap.py`` finds them bit-identical to DScribe's
public class on periodic boxes, open clouds and centre subsets. DScribe is pinned
(``requirements/constraints.txt``) because this relies on its extension's interface.

The radial basis: for each l, ``n_max`` Gaussian-type orbitals r^l exp(-alpha r^2) that decay to 1e-3 at
``n_max`` radii evenly spaced from 1 A to ``r_cut``, Loewdin-orthonormalised (beta = S^-1/2 of their
overlap matrix S). Atoms are Gaussians of width ``sigma``; neighbours count out to
``r_cut + cutoff_padding(sigma)``, where such a Gaussian has decayed to 1e-3.
"""

from __future__ import annotations

import math

import numpy as np

from .phases import OXYGEN_NUMBER

#: Value to which the radial orbitals decay at their radius, and atom Gaussians at the cutoff padding.
DECAY = 1e-3


def cutoff_padding(sigma: float) -> float:
    """Distance (A) beyond ``r_cut`` at which an atom's Gaussian of width ``sigma`` has decayed to 1e-3."""
    return sigma * math.sqrt(-2.0 * math.log(DECAY))


def gto_basis(r_cut: float, n_max: int, l_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Exponents and orthonormalising coefficients of the GTO radial basis.

    Returns
    -------
    alphas : numpy.ndarray, shape (l_max + 1, n_max)
        Exponents, 1/A^2: orbital ``n`` of degree ``l`` decays to 1e-3 at radius ``linspace(1, r_cut)[n]``.
    betas : numpy.ndarray, shape (l_max + 1, n_max, n_max)
        For each l, S^-1/2 of the orbitals' overlap matrix S (Loewdin orthonormalisation).
    """
    from scipy.linalg import inv, sqrtm
    from scipy.special import gamma

    radii = np.linspace(1.0, r_cut, n_max)
    alphas = np.zeros((l_max + 1, n_max))
    betas = np.zeros((l_max + 1, n_max, n_max))
    for l in range(l_max + 1):
        alpha = -np.log(DECAY / np.power(radii, l)) / radii**2
        pair = alpha[:, None] + alpha[None, :]
        # <r^l e^{-a r^2} | r^l e^{-b r^2}> over r^2 dr
        overlap = 0.5 * gamma(l + 1.5) * pair ** (-l - 1.5)
        beta = sqrtm(inv(overlap))
        if np.iscomplexobj(beta):
            raise ValueError(f"the GTO radial basis (r_cut {r_cut}, n_max {n_max}) cannot be orthonormalised: "
                             "lower n_max or raise r_cut")
        alphas[l] = alpha
        betas[l] = beta
    return alphas, betas


class GtoSoap:
    """SOAP of oxygen centres among oxygens (one species), ``(n_max (n_max + 1) / 2) (l_max + 1)`` features.

    Parameters
    ----------
    r_cut, sigma : float
        Cutoff and atom Gaussian width, Angstrom.
    n_max, l_max : int
        Radial and angular sizes of the expansion.
    periodic : bool
        Whether inputs are periodic boxes (else open clouds: the plugin's local + ghost atoms).
    """

    def __init__(self, r_cut: float, n_max: int, l_max: int, sigma: float, periodic: bool):
        import dscribe.ext

        self.n_features = n_max * (n_max + 1) // 2 * (l_max + 1)
        self.periodic = periodic
        alphas, betas = gto_basis(r_cut, n_max, l_max)
        self._ext = dscribe.ext.SOAPGTO(
            r_cut, n_max, l_max, 1.0 / (2.0 * sigma**2),  # eta of exp(-eta r^2)
            {},  # no weighting: every atom's Gaussian counts fully, the centre's own included
            "off",  # no averaging over centres
            cutoff_padding(sigma),
            np.array([OXYGEN_NUMBER]), np.array([1.0]),  # the one species, weight 1
            periodic,
            "off",  # no compression
            alphas.ravel(), betas.ravel(),
        )

    def create(self, positions: np.ndarray, cell: np.ndarray | None, pbc, centers: np.ndarray | None = None) -> np.ndarray:
        """Power spectra of ``centers`` (default: every atom).

        Parameters
        ----------
        positions : numpy.ndarray, shape (N, 3)
            Finite oxygen positions, Angstrom.
        cell : numpy.ndarray, shape (3, 3), or None
            Cell vectors as rows, Angstrom (used only when ``periodic``).
        pbc : tuple of 3 bool
            Periodicity along each cell vector (used only when ``periodic``).
        centers : numpy.ndarray of int, shape (n,), optional
            Indices of the atoms to describe.

        Returns
        -------
        numpy.ndarray, shape (n, n_features)
        """
        from ase.geometry.cell import complete_cell

        positions = np.ascontiguousarray(positions, dtype=np.float64)
        centers = np.arange(len(positions)) if centers is None else np.asarray(centers, dtype=np.int64)
        out = np.zeros((len(centers), self.n_features))
        if len(centers) == 0:
            return out
        if self.periodic:
            box, periodicity = complete_cell(np.asarray(cell, dtype=np.float64)), np.asarray(pbc, dtype=bool)
        else:
            box, periodicity = np.eye(3), np.zeros(3, dtype=bool)
        self._ext.create(out, positions, np.full(len(positions), OXYGEN_NUMBER), box, periodicity,
                         np.ascontiguousarray(positions[centers]))
        return out
