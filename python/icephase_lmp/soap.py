"""The SOAP power spectrum of O in O: DScribe's GTO descriptor, computed by our compiled kernel.

The features are DScribe 2.1's (GTO radial basis, no weighting, no averaging, no compression, one species),
so models fitted with DScribe keep working and ``tests/test_soap.py`` checks them against DScribe's public
class. Two ways to compute them:

- ``icephase_lmp._soap_kernel`` (built with the package from ``_soap_kernel.cpp``): the radial functions are
  tabulated once per descriptor (cubic Hermite pieces every 0.01 A, where the difference from DScribe is
  that of a direct port with exact exponentials: the rounding of the sums) and each centre's expansion is summed in registers. 3.5-3.8x
  cheaper than DScribe's extension, which evaluates n_max (l_max + 1) exponentials per neighbour pair
  (benchmarks/soap_backends.py, speed.py --baseline-soap dscribe). Agreement with DScribe: ~1e-10 of
  each feature's largest value. The kernel also finds the neighbours (a cell list over an open cloud of
  points); a periodic box is handed to it as its atoms followed by their images within the reach
  (``geometry.periodic_cloud``), so no array of all neighbour vectors is ever formed.
  The expansion (harmonics, radial functions, coefficients) runs in single precision by default
  (``PRECISION``): twice the numbers per vector register and half the table's memory, 1.25-1.5x cheaper
  on the GCIceNet frames, at ~1e-6 of each descriptor's largest feature, which moves a distance to the
  nearest reference by at most ~3e-5 (references ~1e-3 from a perfect crystal, threshold ~7.7; measured in
  docs/validation.md, "ninth session"). ``precision="double"`` gives DScribe's numbers to ~1e-10.
- DScribe's own compiled extension, called directly, where the kernel was not built (no C++ compiler at
  install time): the same descriptor in double precision (the same labels), slower. ``BACKEND`` says which one this process uses.

Why not ``dscribe.descriptors.SOAP``: importing ``dscribe.descriptors`` imports every DScribe descriptor and,
through them, scikit-learn and scipy.stats (1.6 s per process, paid by every ``icephase classify``, every
LAMMPS run's first call and every dask worker). DScribe is pinned (``requirements/constraints.txt``) because
the fallback relies on its extension's interface.

The radial basis: for each l, ``n_max`` Gaussian-type orbitals r^l exp(-alpha r^2) that decay to 1e-3 at
``n_max`` radii evenly spaced from 1 A to ``r_cut``, Loewdin-orthonormalised (beta = S^-1/2 of their
overlap matrix S). Atoms are Gaussians of width ``sigma``; neighbours count out to
``r_cut + cutoff_padding(sigma)``, where such a Gaussian has decayed to 1e-3.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .geometry import periodic_cloud
from .phases import OXYGEN_NUMBER

try:
    from . import _soap_kernel
except ImportError:  # built without a C++ compiler: DScribe's extension gives the same features
    _soap_kernel = None

#: Which code computes SOAP for descriptors made from now on: "icephase" (our kernel, where built) or
#: "dscribe" (the fallback; ``ICEPHASE_SOAP_BACKEND=dscribe`` forces it, e.g. to compare the two).
BACKEND = "icephase" if _soap_kernel is not None and os.environ.get("ICEPHASE_SOAP_BACKEND") != "dscribe" else "dscribe"
#: Value to which the radial orbitals decay at their radius, and atom Gaussians at the cutoff padding.
DECAY = 1e-3
#: Grid step (A) of the kernel's radial spline table. Largest difference from DScribe over four GCIceNet
#: frames, relative to the largest feature: 0.6-1.0e-10 at 0.01 A, as with exact exponentials
#: (0.9-1.5e-10), against 2.4-2.7e-10 at 0.02 A and 1.1e-8 at 0.05 A (two frames): the table's error
#: (step^4) is below the rounding of the sums at 0.01 A.
TABLE_SPACING = 0.01
#: Arithmetic of the kernel's expansion: "single" (float32: the default, see above) or "double" (float64,
#: DScribe's numbers to rounding). The distances that index the table and the final sums over m are double.
PRECISION = "single"
PRECISIONS = {"single": np.float32, "double": np.float64}


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
    from threadpoolctl import threadpool_limits

    radii = np.linspace(1.0, r_cut, n_max)
    alphas = np.zeros((l_max + 1, n_max))
    betas = np.zeros((l_max + 1, n_max, n_max))
    for l in range(l_max + 1):
        alpha = -np.log(DECAY / np.power(radii, l)) / radii**2
        pair = alpha[:, None] + alpha[None, :]
        # <r^l e^{-a r^2} | r^l e^{-b r^2}> over r^2 dr
        overlap = 0.5 * gamma(l + 1.5) * pair ** (-l - 1.5)
        # S is ill-conditioned: its inverse square root differs at ~1e-6 with the BLAS thread count, which
        # moves a perfect crystal's distance to its reference (~1e-3) by its own size; one thread, as the
        # shipped references were computed (OMP_NUM_THREADS=1), makes the features the same on every machine
        with threadpool_limits(limits=1):
            beta = sqrtm(inv(overlap))
        if np.iscomplexobj(beta):
            raise ValueError(f"the GTO radial basis (r_cut {r_cut}, n_max {n_max}) cannot be orthonormalised: "
                             "lower n_max or raise r_cut")
        alphas[l] = alpha
        betas[l] = beta
    return alphas, betas


def radial_table(r_cut: float, n_max: int, l_max: int, sigma: float, spacing: float = TABLE_SPACING
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's tables: cubic pieces of R_ln(r) and the centre's own contribution to c_n00.

    R_ln(r) = pi^1.5 sum_k b_lnk exp(a_lk r^2) is what one neighbour at distance r adds to c_nlm, divided
    by r^l Y_lm: with eta = 1 / (2 sigma^2), a_lk = -alpha_lk / (1 + alpha_lk / eta) and
    b_lnk = beta_lnk eta^-1.5 (1 + alpha_lk / eta)^-(l + 1.5) (the Gaussian-times-GTO integral done
    analytically, as DScribe's extension does it).

    Returns
    -------
    table : numpy.ndarray, shape (G, l_max + 1, 4, NP)
        For the cell [g h, (g + 1) h): R = c0 + t c1 + t^2 c2 + t^3 c3 with t = r / h - g (cubic Hermite
        from the exact values and slopes at the cell's ends); the functions padded with zeros to NP, a
        multiple of 4.
    self_term : numpy.ndarray, shape (n_max,)
        c_n00 of the centre's own Gaussian (r = 0).
    """
    alphas, betas = gto_basis(r_cut, n_max, l_max)
    eta = 1.0 / (2.0 * sigma**2)
    shrink = 1.0 / (1.0 + alphas / eta)  # (l, k)
    a = -alphas * shrink
    ls = np.arange(l_max + 1)[:, None]
    b = math.pi**1.5 * eta**-1.5 * betas * (shrink ** (ls + 1.5))[:, None, :]  # (l, n, k)
    n_cells = int(math.ceil((r_cut + cutoff_padding(sigma)) / spacing)) + 1
    r = np.arange(n_cells + 1) * spacing
    gauss = np.exp(a[None] * (r**2)[:, None, None])  # (G + 1, l, k)
    value = np.einsum("lnk,glk->gln", b, gauss)
    slope = spacing * np.einsum("lnk,glk->gln", b, gauss * 2.0 * a[None] * r[:, None, None])
    f0, f1, d0, d1 = value[:-1], value[1:], slope[:-1], slope[1:]
    pieces = np.stack([f0, d0, 3.0 * (f1 - f0) - 2.0 * d0 - d1, 2.0 * (f0 - f1) + d0 + d1], axis=2)
    padded = 4 * math.ceil(n_max / 4)
    table = np.zeros((n_cells, l_max + 1, 4, padded))
    table[..., :n_max] = pieces
    self_term = b[0].sum(axis=1) * 0.5 / math.sqrt(math.pi)  # Y_00 = 1 / (2 sqrt(pi))
    return table, self_term


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
    backend : str, optional
        "icephase" (the compiled kernel, default where built) or "dscribe" (DScribe's extension).
    precision : str, optional
        The kernel's arithmetic, "single" or "double" (default ``PRECISION``); DScribe's is double.
    """

    def __init__(self, r_cut: float, n_max: int, l_max: int, sigma: float, periodic: bool,
                 backend: str | None = None, precision: str | None = None):
        backend = backend or BACKEND
        precision = precision or PRECISION
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if backend == "icephase" and (_soap_kernel is None or n_max > _soap_kernel.MAX_N):
            backend = "dscribe"  # not built, or an n_max beyond what the kernel was compiled for
        self.backend = backend
        self.n_features = n_max * (n_max + 1) // 2 * (l_max + 1)
        self.periodic = periodic
        self.n_max = n_max
        self.reach = r_cut + cutoff_padding(sigma)
        self.precision = precision if backend == "icephase" else "double"
        if backend == "icephase":
            table, self._self_term = radial_table(r_cut, n_max, l_max, sigma)
            self._table = np.ascontiguousarray(table, dtype=PRECISIONS[precision])  # its dtype picks the kernel's
            self._prel = np.array([math.pi * math.sqrt(8.0 / (2 * l + 1)) for l in range(l_max + 1)])
            return
        import dscribe.ext

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
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        centers = np.arange(len(positions)) if centers is None else np.asarray(centers, dtype=np.int64)
        if len(centers) == 0:
            return np.zeros((0, self.n_features))
        if self.backend == "dscribe":
            return self._create_dscribe(positions, cell, pbc, centers)
        return self._kernel(positions, cell, pbc, centers)

    def _kernel(self, positions: np.ndarray, cell, pbc, centers: np.ndarray) -> np.ndarray:
        """Our kernel on an open cloud: the positions themselves, or a periodic box's atoms followed by their
        images within the reach (the first N rows are the atoms, so the centre indices stay valid)."""
        if self.periodic and np.any(pbc):
            positions, _ = periodic_cloud(positions, cell, pbc, self.reach)
        return _soap_kernel.power_spectrum(positions, centers, self.reach, self._table, TABLE_SPACING, self.n_max,
                                           self._self_term, self._prel)

    def _create_dscribe(self, positions: np.ndarray, cell, pbc, centers: np.ndarray) -> np.ndarray:
        from ase.geometry.cell import complete_cell

        out = np.zeros((len(centers), self.n_features))
        if self.periodic:
            box, periodicity = complete_cell(np.asarray(cell, dtype=np.float64)), np.asarray(pbc, dtype=bool)
        else:
            box, periodicity = np.eye(3), np.zeros(3, dtype=bool)
        self._ext.create(out, positions, np.full(len(positions), OXYGEN_NUMBER), box, periodicity,
                         np.ascontiguousarray(positions[centers]))
        return out
