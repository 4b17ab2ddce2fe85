"""The SOAP classifier (the paper's Algorithm 2).

SOAP of each oxygen (DScribe's GTO power spectrum, ``soap``) -> StandardScaler -> PCA(30) -> distance to
the nearest reference environment (Euclidean or cosine). The nearest reference gives the phase; a distance
above the threshold means no reference matches: liquid (code 0).

Fitting. The ideal references hold only ~15 distinct environments, so a scaler and PCA fitted on them alone
are rank-deficient: features that never vary among ideal sites get a near-zero scale and blow up any
deviation. We fit the scaler and PCA on the ideal environments plus copies with small Gaussian
displacements (``fit_noise`` A), which gives every feature a physical spread, and keep the ideal
environments, at several isotropic scales (MD densities differ from GenIce2's; ice VII in particular
spans a wide range with pressure), as the reference set that distances are measured to.

A model file adds a second kind of reference environment (``ref_denoised``): the references with thermal-like
noise, after the model's own denoiser (see ``denoised_references``). Positions that went through the
denoiser are compared with both kinds; raw positions (the SOAP-only pipeline) with the ideal ones only.

Saved as npz (loaded with ``allow_pickle=False``) holding the arrays and a JSON header.
"""

from __future__ import annotations

import functools
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .boundary import BoundarySettings
from .errors import ClassifierError
from .phase_vote import PhaseVoteSettings
from .ring_census import RingTable, fit_ring_table
from .site_census import SiteTable, distinct_rows, site_table_of
from .phases import LIQUID, code_table
from . import soap as soap_module
from .references import Reference, supercell
from .soap import GtoSoap, cutoff_padding

METRICS = ("euclidean", "cosine")
#: Format version of the saved classifier arrays.
CLASSIFIER_FORMAT = 1


@dataclass(frozen=True)
class SoapSettings:
    """SOAP of O in O. n_max and l_max are the paper's; r_cut (the paper does not state it) is ours: 5 A
    gave the narrowest band of ice labelled liquid at an ice/liquid interface (5 A deep, vs 6 A at r_cut 6
    and 7 A at 8; benchmarks/interface_width.py), the widest ice/liquid margin on bulk MD, and costs less."""

    r_cut: float = 5.0
    n_max: int = 12
    l_max: int = 10
    sigma: float = 1.0

    @property
    def reach(self) -> float:
        """How far (A) atoms still change a centre's SOAP: DScribe pads r_cut so that the Gaussian of an
        atom at the edge has decayed to 1e-3, i.e. by sigma * sqrt(-2 ln 1e-3) = 3.7 sigma."""
        return self.r_cut + cutoff_padding(self.sigma)

    def descriptor(self, periodic: bool) -> GtoSoap:
        """The SOAP calculator for these settings (made once per settings and periodicity)."""
        return _soap_descriptor(self, periodic, soap_module.BACKEND, soap_module.PRECISION)


@functools.lru_cache(maxsize=8)
def _soap_descriptor(settings: SoapSettings, periodic: bool, backend: str, precision: str) -> GtoSoap:
    """The SOAP calculator for these settings, made once (its set-up solves for the radial basis and, for our
    kernel, tabulates it)."""
    return GtoSoap(settings.r_cut, settings.n_max, settings.l_max, settings.sigma, periodic, backend, precision)


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit_classifier` conditions the scaler and PCA and builds the reference set."""

    n_components: int = 30
    #: isotropic length scales at which each reference is added to the reference set (density x 0.89-1.12).
    scales: tuple[float, ...] = (0.96, 0.98, 1.0, 1.02, 1.04)
    #: scales below this fraction of the median feature scale are raised to it: such features are ~0 for
    #: every O-O environment (numerical dust), and unit-scaling them would let rounding noise weigh as much
    #: as real structure.
    scale_floor: float = 1e-2
    #: sigma (A) of the displaced copies that condition the scaler and PCA.
    fit_noise: tuple[float, ...] = (0.05, 0.1, 0.2)
    copies_per_noise: int = 2
    seed: int = 0


@dataclass
class ClassificationResult:
    """What :meth:`Classifier.classify` found for ``n`` centres."""

    codes: np.ndarray  # (n,) int32: 0 liquid, 1..K phase
    distances: np.ndarray  # (n,) float64: distance to the nearest reference environment
    nearest: np.ndarray  # (n,) int32: code of the nearest reference, even when above the threshold


@dataclass
class Classifier:
    """SOAP -> scaler -> PCA -> nearest reference environment: the phase of each oxygen (Algorithm 2).

    Made by :func:`fit_classifier` from reference structures, stored in a model file (``model_file``) and
    used by :class:`~icephase_lmp.pipeline.Pipeline` after the denoiser. All lengths are in Angstrom.

    Parameters
    ----------
    names : list of str
        Phase names; phase ``names[i]`` has code ``i + 1`` (code 0 is liquid).
    soap : SoapSettings
        The SOAP descriptor of O in O (cutoff and width in Angstrom).
    scaler_mean, scaler_scale : numpy.ndarray, shape (F,)
        The standard scaler of the ``F`` SOAP features.
    pca_mean : numpy.ndarray, shape (F,)
        Mean of the scaled features.
    pca_components : numpy.ndarray, shape (k, F)
        The ``k`` principal axes (``k`` is 30 unless the fit had fewer samples or features).
    ref_features : numpy.ndarray, shape (M, k)
        The ``M`` reference environments in PCA space.
    ref_codes : numpy.ndarray of int32, shape (M,)
        Phase code (1..len(names)) of each reference environment.
    ref_denoised : numpy.ndarray of bool, shape (M,), optional
        True for environments made by denoising noisy references; raw (undenoised) input is compared with
        the others only. Default: all False.
    thresholds : dict of str to float, optional
        Liquid thresholds keyed ``"<denoised|raw>/<metric>"``, in the metric's units (PCA-space length for
        ``euclidean``, 1 - cosine similarity for ``cosine``).
    metric : {"euclidean", "cosine"}, optional
        The default metric.
    boundary : BoundarySettings, optional
        The boundary step that follows classification of denoised positions (``boundary``).
    phase_vote : PhaseVoteSettings, optional
        The phase vote between classification of denoised positions and the boundary step (``phase_vote``).
    sites : SiteTable, optional
        The distinct sites of each phase and their shares (``site_census``); empty: no site census.
    rings : RingTable, optional
        The ring signatures of each 4-bonded phase the site census counts (``ring_census``); empty: no ring
        census.

    Raises
    ------
    ClassifierError
        When the reference arrays differ in length.
    """

    names: list[str]
    soap: SoapSettings
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    pca_mean: np.ndarray
    pca_components: np.ndarray  # (k, F)
    ref_features: np.ndarray  # (M, k)
    ref_codes: np.ndarray  # (M,)
    #: (M,) bool: True for environments made by denoising noisy references (used for denoised input only)
    ref_denoised: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: thresholds keyed "<pipeline>/<metric>", pipeline "denoised" or "raw" (SOAP on undenoised positions).
    thresholds: dict[str, float] = field(default_factory=dict)
    metric: str = "euclidean"
    #: the boundary step that follows classification of denoised positions (see ``boundary``)
    boundary: BoundarySettings = field(default_factory=BoundarySettings)
    #: the phase vote between classification and the boundary step (see ``phase_vote``; off by default)
    phase_vote: PhaseVoteSettings = field(default_factory=PhaseVoteSettings)
    #: each phase's distinct sites and their shares (see ``site_census``); empty in files made before it
    sites: SiteTable = field(default_factory=SiteTable.empty)
    #: the ring signatures of the phases the ring census counts (see ``ring_census``); empty in older files
    rings: RingTable = field(default_factory=RingTable.empty)
    #: search structures over the reference environments (``ReferenceIndex``, or ``ReferenceTree`` without the
    #: compiled kernel), made on first use; not part of the model
    _searches: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    #: the scaler and the PCA folded into one affine map (weights (F, k), offset (k,)), made on first use
    _projection: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ref_codes = np.asarray(self.ref_codes, dtype=np.int32)
        self.ref_denoised = np.asarray(self.ref_denoised, dtype=bool)
        if self.ref_denoised.size == 0:
            self.ref_denoised = np.zeros(len(self.ref_codes), dtype=bool)
        if not (len(self.ref_features) == len(self.ref_codes) == len(self.ref_denoised)):
            raise ClassifierError(
                f"reference arrays disagree: {len(self.ref_features)} features, {len(self.ref_codes)} codes, "
                f"{len(self.ref_denoised)} denoised flags"
            )
        if self.phase_vote.radius > self.soap.reach:
            # the LAMMPS compute's cloud reaches the SOAP reach beyond its local atoms, and no farther
            raise ClassifierError(f"the phase vote radius {self.phase_vote.radius} A exceeds the SOAP reach "
                                  f"{self.soap.reach:.3g} A")
        if self.boundary.support_radius > self.soap.reach:
            raise ClassifierError(f"the boundary step's support radius {self.boundary.support_radius} A exceeds "
                                  f"the SOAP reach {self.soap.reach:.3g} A")

    def references(self, denoised: bool) -> tuple[np.ndarray, np.ndarray]:
        """(features, codes) of the reference environments that input of this kind is compared with."""
        if denoised:
            return self.ref_features, self.ref_codes
        ideal = ~self.ref_denoised
        return self.ref_features[ideal], self.ref_codes[ideal]

    def add_references(self, reduced: np.ndarray, codes: np.ndarray, denoised: bool) -> None:
        """Append reference environments: ``reduced`` (m, k) in PCA space, ``codes`` (m,) in 1..len(names);
        ``denoised`` marks them as made by the denoiser (compared with denoised input only)."""
        self._searches.clear()
        reduced = np.asarray(reduced, dtype=np.float64).reshape(-1, self.ref_features.shape[1])
        codes = np.asarray(codes, dtype=np.int32).ravel()
        if len(codes) != len(reduced):
            raise ClassifierError(f"{len(reduced)} reference environments but {len(codes)} codes")
        if len(codes) and not (1 <= codes.min() and codes.max() <= len(self.names)):
            raise ClassifierError(f"reference codes must lie in 1..{len(self.names)}")
        self.ref_features = np.concatenate([self.ref_features, reduced])
        self.ref_codes = np.concatenate([self.ref_codes, codes])
        self.ref_denoised = np.concatenate([self.ref_denoised, np.full(len(codes), denoised)])

    def without_phase(self, name: str) -> "Classifier":
        """A copy that has no reference environment of phase ``name``: the same names and codes (the phase keeps
        its code, which no molecule can get), thresholds and settings. What a model that was never given that
        phase's references calls its crystal (``benchmarks/other_crystal.py --leave-one-out``)."""
        if name not in self.names:
            raise ClassifierError(f"no phase {name!r} among {', '.join(self.names)}")
        keep = self.ref_codes != self.names.index(name) + 1
        return replace(self, names=list(self.names), thresholds=dict(self.thresholds),
                       ref_features=self.ref_features[keep], ref_codes=self.ref_codes[keep],
                       ref_denoised=self.ref_denoised[keep])

    # ---- descriptors -------------------------------------------------------------------------
    def soap_features(
        self,
        positions: np.ndarray,
        cell: np.ndarray | None = None,
        pbc: tuple[bool, bool, bool] = (True, True, True),
        centers: np.ndarray | None = None,
    ) -> np.ndarray:
        """Raw SOAP vectors of ``centers`` (default: every atom), before scaling and PCA.

        Parameters
        ----------
        positions : array_like, shape (N, 3)
            Oxygen positions, Angstrom.
        cell : array_like, shape (3, 3), optional
            Cell vectors as rows, Angstrom. ``None``, or no periodic direction in ``pbc``, makes the atoms
            an open cloud: the plugin passes each rank's local atoms as centres and its ghost atoms as
            their surroundings.
        pbc : tuple of 3 bool, optional
            Periodicity along each cell vector.
        centers : array_like of int, shape (n,), optional
            Indices of the atoms to describe; default all ``N``.

        Returns
        -------
        numpy.ndarray, shape (n, F)
            One SOAP vector of ``F`` features per centre (``n = N`` without ``centers``).

        Raises
        ------
        ClassifierError
            When ``positions`` is not (N, 3) or holds NaN or Inf.
        """
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise ClassifierError(f"positions must have shape (N, 3), got {positions.shape}")
        if not np.isfinite(positions).all():
            raise ClassifierError("positions contain NaN or Inf: the simulation has blown up or the file is corrupt")
        periodic = cell is not None and bool(np.any(pbc))
        return self.soap.descriptor(periodic).create(positions, cell, pbc, centers)

    def reduce(self, features: np.ndarray) -> np.ndarray:
        """StandardScaler then PCA: (n, F) -> (n, k).

        Both are affine, so they are applied as one product, ``features @ W + c``: scaling and centring the
        (n, F) array first cost three passes over it, more than the product itself (F ~ 860, k = 30). The
        result differs from the two steps in turn by rounding only (~1e-15 relative)."""
        if self._projection is None:
            weights = (self.pca_components / self.scaler_scale).T  # (F, k)
            offset = -((self.scaler_mean / self.scaler_scale + self.pca_mean) @ self.pca_components.T)
            self._projection = (np.ascontiguousarray(weights), offset)
        weights, offset = self._projection
        return np.asarray(features, dtype=np.float64) @ weights + offset

    # ---- decisions ---------------------------------------------------------------------------
    def threshold(self, metric: str, denoised: bool) -> float:
        """The calibrated liquid threshold for this metric and input kind; :class:`ClassifierError` if none."""
        key = f"{'denoised' if denoised else 'raw'}/{metric}"
        if key not in self.thresholds:
            raise ClassifierError(
                f"this classifier has no calibrated threshold for {key}; pass one explicitly "
                f"(--threshold) or calibrate it with `icephase calibrate`"
            )
        return self.thresholds[key]

    def classify_reduced(
        self, reduced: np.ndarray, metric: str, threshold: float, denoised: bool = True
    ) -> ClassificationResult:
        """:meth:`classify` of features already reduced by :meth:`reduce`, shape (n, k)."""
        ref_features, ref_codes = self.references(denoised)  # nearest_reference checks the metric
        key = (denoised, metric)
        if metric in METRICS and key not in self._searches:
            # the compiled search's groups where the package was built with a compiler, else the k-d tree
            compiled = soap_module._soap_kernel is not None
            self._searches[key] = (ReferenceIndex if compiled else ReferenceTree)(ref_features, metric)
        search = self._searches.get(key)
        if isinstance(search, ReferenceIndex):
            best, distances = nearest_reference(reduced, ref_features, metric, index=search)
        else:
            best, distances = nearest_reference(reduced, ref_features, metric, tree=search, bound=threshold)
        nearest = ref_codes[best].astype(np.int32)
        codes = np.where(distances > threshold, LIQUID, nearest).astype(np.int32)
        return ClassificationResult(codes, distances, nearest)

    def classify(
        self,
        positions: np.ndarray,
        cell: np.ndarray | None = None,
        pbc: tuple[bool, bool, bool] = (True, True, True),
        centers: np.ndarray | None = None,
        metric: str | None = None,
        threshold: float | None = None,
        denoised: bool = True,
    ) -> ClassificationResult:
        """Phase code of each centre: the nearest reference environment's, or liquid (0) beyond the threshold.

        Parameters
        ----------
        positions : array_like, shape (N, 3)
            Oxygen positions, Angstrom (denoised ones, unless ``denoised=False``).
        cell : array_like, shape (3, 3), optional
            Cell vectors as rows, Angstrom; ``None``: an open cloud (see :meth:`soap_features`).
        pbc : tuple of 3 bool, optional
            Periodicity along each cell vector.
        centers : array_like of int, shape (n,), optional
            Indices of the atoms to classify; default all ``N``.
        metric : {"euclidean", "cosine"}, optional
            Default: :attr:`metric`.
        threshold : float, optional
            Distances above it are liquid; default: the calibrated ``thresholds["<denoised|raw>/<metric>"]``.
        denoised : bool, optional
            Whether ``positions`` went through the denoiser: it chooses the reference set
            (:meth:`references`) and the default threshold.

        Returns
        -------
        ClassificationResult
            ``codes``, ``distances`` and ``nearest``, each of shape (n,).

        Raises
        ------
        ClassifierError
            On bad positions, an unknown metric, or no calibrated threshold for this metric and input.
        """
        metric = metric or self.metric
        if threshold is None:
            threshold = self.threshold(metric, denoised)
        feats = self.soap_features(positions, cell, pbc, centers)
        return self.classify_reduced(self.reduce(feats), metric, threshold, denoised)

    @property
    def code_names(self) -> dict[int, str]:
        """Phase name of every code, liquid (0) and not analysed (-1) included."""
        return code_table(self.names)

    # ---- persistence (no pickle) -------------------------------------------------------------
    def header(self) -> dict:
        """The JSON header stored with the arrays: format, names, SOAP, thresholds, metric, boundary step, phase
        vote."""
        return {
            "format": CLASSIFIER_FORMAT,
            "names": self.names,
            "soap": asdict(self.soap),
            "thresholds": self.thresholds,
            "metric": self.metric,
            "boundary": self.boundary.to_dict(),
            "phase_vote": self.phase_vote.to_dict(),
        }

    def to_bytes(self) -> bytes:
        """The classifier as ``.npz`` bytes (arrays and JSON header; no pickle), as a model file stores it."""
        buf = io.BytesIO()
        np.savez(
            buf,
            header=np.array(json.dumps(self.header())),
            scaler_mean=self.scaler_mean,
            scaler_scale=self.scaler_scale,
            pca_mean=self.pca_mean,
            pca_components=self.pca_components,
            ref_features=self.ref_features,
            ref_codes=self.ref_codes,
            ref_denoised=self.ref_denoised,
            site_features=self.sites.features,
            site_codes=self.sites.codes,
            site_shares=self.sites.shares,
            ring_codes=self.rings.codes,
            ring_signatures=self.rings.signatures,
        )
        return buf.getvalue()

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path``."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "classifier data") -> "Classifier":
        """Read :meth:`to_bytes`; ``origin`` names the source in the :class:`ClassifierError` a bad one raises."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            header = json.loads(str(arrays.pop("header")))
            site_arrays = [arrays.pop(k, None) for k in ("site_features", "site_codes", "site_shares")]
            sites = SiteTable(*site_arrays) if site_arrays[1] is not None else SiteTable.empty()
            ring_arrays = [arrays.pop(k, None) for k in ("ring_codes", "ring_signatures")]
            rings = RingTable(*ring_arrays) if ring_arrays[0] is not None else RingTable.empty()
            if header.get("format") != CLASSIFIER_FORMAT:
                raise ClassifierError(
                    f"{origin}: classifier format {header.get('format')} is not the supported {CLASSIFIER_FORMAT}"
                )
            return cls(
                names=list(header["names"]),
                soap=SoapSettings(**header["soap"]),
                thresholds={k: float(v) for k, v in header["thresholds"].items()},
                metric=header["metric"],
                boundary=BoundarySettings.from_dict(header.get("boundary")),
                phase_vote=PhaseVoteSettings.from_dict(header.get("phase_vote")),
                sites=sites,
                rings=rings,
                **arrays,
            )
        except ClassifierError:
            raise
        except Exception as exc:
            raise ClassifierError(f"{origin} is not a valid icephase classifier ({exc})") from exc

    @classmethod
    def load(cls, path: str | Path) -> "Classifier":
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ClassifierError(f"classifier file {str(path)!r} does not exist")
        return cls.from_bytes(path.read_bytes(), origin=str(path))


class ReferenceTree:
    """A k-d tree over reference environments, for the rows that have one within a bound (ice rows).

    A liquid row's nearest reference is far, and a tree search for it visits most of the tree (slower than
    the matrix product); an ice row's is close and the tree finds it in microseconds. So
    :func:`nearest_reference` asks the tree only for references within the liquid threshold (an exact
    nearest wherever one lies within it) and computes the rest with the matrix product. For the cosine
    metric the tree holds unit vectors: the smallest 1 - cos is the smallest |u - v| (|u - v|^2 =
    2 (1 - cos)).
    """

    def __init__(self, references: np.ndarray, metric: str):
        from scipy.spatial import cKDTree

        b = np.asarray(references, dtype=np.float64)
        self.metric = metric
        self.tree = cKDTree(_unit_rows(b) if metric == "cosine" else b)

    def within(self, rows: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
        """(index, hit): the nearest reference of each row with one closer than ``bound`` (metric units)."""
        if self.metric == "cosine":
            query, radius = _unit_rows(rows), math.sqrt(max(2.0 * bound, 0.0))
        else:
            query, radius = rows, bound
        d, i = self.tree.query(query, k=1, distance_upper_bound=radius)
        hit = np.isfinite(d)
        return np.where(hit, i, 0), hit


class ReferenceIndex:
    """Groups of reference environments around centres, for the compiled exact search of every row
    (``_soap_kernel.nearest_indexed``).

    The float32 scan reads every reference for every row, and the k-d tree answers only rows with a reference
    within the liquid threshold; with the eleven-phase model's 19,331 references a liquid-labelled or
    other-crystal row cost 40-90 us that way (docs/validation.md, "The indexed search"). Here each reference
    belongs to its nearest centre, and the triangle inequality bounds how close any member of a group can come
    to a row (``|row - centre| - radius``, and per member ``||row - centre| - |member - centre||``), so a row
    reads the few groups and members that can hold its nearest reference: an exact search, not an approximate
    one. The centres are every (M / G)-th reference moved by :data:`INDEX_LLOYD_STEPS` k-means steps
    (deterministic; no random start), G = :data:`INDEX_GROUPS_PER_ROOT` sqrt(M): a row then reads about
    G centres and a few groups, against M references. For the cosine metric the groups hold unit vectors
    (the smallest 1 - cos is the smallest |u - v|).
    """

    def __init__(self, references: np.ndarray, metric: str):
        b = np.asarray(references, dtype=np.float64)
        if len(b) == 0:
            raise ClassifierError("the classifier has no reference environments")
        self.metric = metric
        points = _unit_rows(b) if metric == "cosine" else b
        n_groups = max(1, min(len(points), round(INDEX_GROUPS_PER_ROOT * math.sqrt(len(points)))))
        centres = points[np.linspace(0, len(points) - 1, n_groups).round().astype(np.int64)].copy()
        for _ in range(INDEX_LLOYD_STEPS):
            group = _closest_centre(points, centres)
            counts = np.bincount(group, minlength=n_groups)
            sums = np.zeros_like(centres)
            np.add.at(sums, group, points)
            filled = counts > 0  # an emptied centre stays where it was (its group is empty and skipped)
            centres[filled] = sums[filled] / counts[filled, None]
        group = _closest_centre(points, centres)
        member_d = np.linalg.norm(points - centres[group], axis=1)
        order = np.lexsort((member_d, group))  # by group, then by distance to the group's centre
        #: the points in group order, their indices among the references, and each group's first member
        self.members = np.ascontiguousarray(points[order])
        self.order = order.astype(np.int64)
        self.member_d = np.ascontiguousarray(member_d[order])
        self.starts = np.searchsorted(group[order], np.arange(n_groups + 1)).astype(np.int64)
        self.centres = np.ascontiguousarray(centres)
        #: the largest squared norm of a point: the scale of the rounding margin
        self.size = float((points * points).sum(1).max())
        self._references = b
        self._scores: _ProductScores | None = None

    def product_scores(self) -> "_ProductScores":
        """The product search's scores of these references (for the rows this search is unsure of), made once."""
        if self._scores is None:
            self._scores = _ProductScores.of(self._references, self.metric)
        return self._scores

    def nearest(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index, unsure) of each row: the reference with the smallest float64 squared distance, and whether
        another lies within the rounding margin of it (or the row is not finite): those rows need the plain
        search's float64 scores to tell which one wins."""
        query = _unit_rows(rows) if self.metric == "cosine" else np.asarray(rows, dtype=np.float64)
        margin = _FLOAT64_SLACK * ((query * query).sum(1) + self.size)
        return soap_module._soap_kernel.nearest_indexed(
            query, self.members, self.order, self.starts, self.centres, self.member_d, margin)


def _closest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of each point (by the expanded square; a near tie may go either way, which
    only moves a point between two groups whose bounds both hold)."""
    out = np.empty(len(points), dtype=np.int64)
    c2 = (centres * centres).sum(1)
    for start in range(0, len(points), 4096):
        part = points[start : start + 4096]
        out[start : start + len(part)] = np.argmin(c2 - 2.0 * part @ centres.T, axis=1)
    return out


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


#: Rows per block of the brute-force search: the (rows x references) float32 block (~2 MB for 7,700
#: references) stays in cache while it is formed, shifted and searched.
_NEAREST_CHUNK = 64
#: Bound on the float32 rounding of a score ||b||^2 - 2 a.b (or -a.b / ||b||) relative to ||a||^2 + ||b||^2
#: (or ||a||): a few units of float32 (6e-8) times the 30-term dot product, with a wide margin.
_FLOAT32_SLACK = 1e-5
#: The same bound for the indexed search's float64 squared distances against the plain search's float64
#: scores: both round by a few units of 1.1e-16 times the 30-term sums; 1e-12 leaves a factor ~100. A row
#: whose runner-up lies within it is rare (an exact tie) and goes to the plain search's float64 step.
_FLOAT64_SLACK = 1e-12
#: Groups of the reference index per square root of the number of references, and the k-means steps that
#: move its centres: measured on the eleven-phase model's 19,331 references and the GCIceNet frames
#: (docs/validation.md, "The indexed search").
INDEX_GROUPS_PER_ROOT = 1.0
INDEX_LLOYD_STEPS = 5


def nearest_reference(
    reduced: np.ndarray, references: np.ndarray, metric: str, chunk: int = _NEAREST_CHUNK,
    tree: ReferenceTree | None = None, bound: float | None = None, compiled: bool | None = None,
    index: ReferenceIndex | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index of, and distance to, the nearest reference of each row.

    With ``tree`` (made from the same ``references`` and ``metric``) and ``bound``, rows with a reference
    within ``bound`` are answered by the tree; the others, and every row without a tree, by the matrix
    product. With ``index`` (a :class:`ReferenceIndex` of the same ``references`` and ``metric``; it needs the
    compiled kernel) every row is answered by the indexed search instead, and the rare row it is unsure of
    (a runner-up within float64 rounding, a NaN) by the product's float64 step. All give the exact nearest
    reference, the same one, and each winner's distance is computed from the two
    vectors (the product's shortcut for the argmin is never reported).

    In the product only what the argmin needs is formed for the whole (rows x references) block:
    ||b||^2 - 2 a.b for the Euclidean metric (||a||^2 and the square root are the same along a row), a.b /
    ||b|| for the cosine one. It is formed in float32 (half the memory traffic and twice the arithmetic rate
    of float64); a row whose runner-up lies within the float32 rounding bound of its winner is searched again
    in float64 among the references within that bound of its winner (:func:`_float64_winner`), so the
    result is the float64 search's, ties included. Rows go in small chunks so the block
    stays in cache. Where the package was built with a compiler (``compiled`` None or True), the float32
    scan runs in ``_soap_kernel.nearest_scores`` instead: the same scores and check, each row in one pass over
    the references (about half the time of the numpy blocks for a liquid row, which the tree cannot answer);
    ``compiled=False`` keeps numpy's. ``benchmarks/nearest_reference.py`` times it against scikit-learn's
    ``pairwise_distances_argmin_min``."""
    if metric not in METRICS:
        raise ClassifierError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    a = np.asarray(reduced, dtype=np.float64)
    b = np.asarray(references, dtype=np.float64)
    best = np.zeros(len(a), dtype=np.int64)
    if tree is not None and bound is not None and len(a) and len(b):
        found, hit = tree.within(a, bound)
        best[hit] = found[hit]
        rest = np.flatnonzero(~hit)
        if len(rest):
            best[rest] = nearest_reference(a[rest], b, metric, chunk, compiled=compiled)[0]
        return best, row_distance(a, b[best], metric)
    if len(b) == 0:
        raise ClassifierError("the classifier has no reference environments")
    if index is not None:
        if soap_module._soap_kernel is None:
            raise ClassifierError("icephase_lmp._soap_kernel was not built (no C++ compiler at install)")
        best, unsure = index.nearest(a)
        rows = np.flatnonzero(unsure)
        if len(rows):
            # the plain search's float64 step, with the index's scores of the references (made once: forming
            # them for every call cost more than the indexed search itself on a crystal frame)
            best[rows] = _plain_search(a[rows], b, index.product_scores(), metric, chunk, compiled=False)[0]
        return best, row_distance(a, b[best], metric)
    return _plain_search(a, b, _ProductScores.of(b, metric), metric, chunk, compiled)


@dataclass(frozen=True)
class _ProductScores:
    """What the product search minimises, per reference: ||b||^2 - 2 a.b for the Euclidean metric (``weights``
    -2b, ``offsets`` ||b||^2), -a.b / ||b|| for the cosine one; in float64 and as float32 twins, and the scale of
    the rounding margin (``b_size``)."""

    weights: np.ndarray
    offsets: np.ndarray
    weights32: np.ndarray
    offsets32: np.ndarray
    b_size: float

    @classmethod
    def of(cls, b: np.ndarray, metric: str) -> "_ProductScores":
        if metric == "euclidean":
            weights, offsets = -2.0 * b, (b * b).sum(1)
            b_size = float(offsets.max())
        else:
            weights, offsets = -_unit_rows(b), np.zeros(len(b))
            b_size = 1.0
        return cls(weights, offsets, np.ascontiguousarray(weights.astype(np.float32).T), offsets.astype(np.float32),
                   b_size)


def _plain_search(a: np.ndarray, b: np.ndarray, scores: _ProductScores, metric: str, chunk: int,
                  compiled: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """The product search of :func:`nearest_reference` (its docstring says how): (index, distance) per row."""
    weights, offsets, offsets32 = scores.weights, scores.offsets, scores.offsets32
    weights32 = scores.weights32.T  # (references, k) as float32
    best = np.zeros(len(a), dtype=np.int64)
    # per row: how close to the smallest float32 score a second one must come for the row to be searched in float64
    a_size = (a * a).sum(1) if metric == "euclidean" else np.linalg.norm(a, axis=1)
    margin = 2.0 * _FLOAT32_SLACK * (a_size + scores.b_size)
    if compiled and soap_module._soap_kernel is None:
        raise ClassifierError("icephase_lmp._soap_kernel was not built (no C++ compiler at install)")
    if compiled is not False and soap_module._soap_kernel is not None:
        best, unsure = soap_module._soap_kernel.nearest_scores(a.astype(np.float32), scores.weights32, offsets32,
                                                               margin)
        rows = np.flatnonzero(unsure)
        best[rows] = _float64_winners(a[rows], weights, offsets, weights32, offsets32, margin[rows], chunk)
        return best, row_distance(a, b[best], metric)
    for start in range(0, len(a), chunk):
        part = a[start : start + chunk]
        score = part.astype(np.float32) @ weights32.T
        score += offsets32
        winner = np.argmin(score, axis=1)
        low = score[np.arange(len(part)), winner].astype(np.float64)
        for row in np.flatnonzero((score <= (low + margin[start : start + chunk])[:, None]).sum(1) > 1):
            winner[row] = _float64_winner(part[row], weights, offsets, score[row], margin[start + row])
        best[start : start + chunk] = winner
    return best, row_distance(a, b[best], metric)


def _float64_winners(
    rows: np.ndarray, weights: np.ndarray, offsets: np.ndarray, weights32: np.ndarray, offsets32: np.ndarray,
    margin: np.ndarray, chunk: int,
) -> np.ndarray:
    """:func:`_float64_winner` of each row, for blocks of ``chunk`` rows at a time (the same candidates and
    float64 scores, each computed from its own row and reference alone)."""
    out = np.zeros(len(rows), dtype=np.int64)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        score = part.astype(np.float32) @ weights32.T
        score += offsets32
        # the candidates' bound, rounded up to float32 so that the float32 comparison keeps every candidate
        bound = score.min(axis=1).astype(np.float64) + margin[start : start + chunk]
        bound32 = bound.astype(np.float32)
        bound32 = np.where(bound32.astype(np.float64) < bound, np.nextafter(bound32, np.float32(np.inf)), bound32)
        r, c = np.nonzero(score <= bound32[:, None])
        exact = (weights[c] * part[r]).sum(axis=1) + offsets[c]
        # per row, the smallest exact score, the lowest index among equal ones (pairs come in row, then index
        # order); a row with a NaN has no candidate: 0, as alone
        first = np.lexsort((c, exact, r))
        keep = np.ones(len(first), dtype=bool)
        keep[1:] = r[first[1:]] != r[first[:-1]]
        winners = np.zeros(len(part), dtype=np.int64)
        winners[r[first[keep]]] = c[first[keep]]
        out[start : start + len(part)] = winners
    return out


def _float64_winner(row: np.ndarray, weights: np.ndarray, offsets: np.ndarray, score32: np.ndarray,
                    margin: float) -> int:
    """The reference with the smallest float64 score of one row (the lowest index among equal ones).

    Only the references whose float32 score (``score32``, in any summation order) lies within ``margin`` of
    the row's smallest can win: ``margin`` bounds the float32 rounding of each score, so the float64 winner
    is always among them. In a liquid row of a model with many references, distances crowd together and
    hundreds of rows have a runner-up within the margin (a quarter of GCIceNet's liquid with the eleven-phase
    model's 19,331 references); scoring every reference in float64 for each of them cost more than the
    float32 scan itself (137 against 40 us per oxygen), the candidates alone a few of them.

    The float64 score of a candidate is its own row's elementwise product summed along the row, so it does not
    depend on which other references are candidates (a matrix product may round a column differently with the
    shape of the block, and then two references with equal scores could swap with the rows that happen to be
    searched together: on another number of MPI ranks, say)."""
    low = float(score32.min())
    candidates = np.flatnonzero(score32.astype(np.float64) <= low + margin)
    if len(candidates) == 0:  # a NaN in the row: no score compares; the answer is as meaningless as the row
        return 0
    exact = (weights[candidates] * row).sum(axis=1) + offsets[candidates]
    return int(candidates[np.argmin(exact)])


def pairwise_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(n, k) x (M, k) -> (n, M) distances, vectorised."""
    if metric == "euclidean":
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(sq, 0.0))
    if metric == "cosine":
        na = np.linalg.norm(a, axis=1, keepdims=True)
        nb = np.linalg.norm(b, axis=1, keepdims=True)
        return 1.0 - (a @ b.T) / np.maximum(na * nb.T, 1e-12)
    raise ClassifierError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")


def row_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(n, k) x (n, k) -> (n,): the distance between ``a[r]`` and ``b[r]`` for each row ``r``, as
    :func:`pairwise_distance` gives it, without forming the (n, n) block."""
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return 1.0 - (a * b).sum(1) / np.maximum(norms, 1e-12)
    raise ClassifierError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")


def _unique_rows(x: np.ndarray) -> np.ndarray:
    """Symmetry-equivalent sites have identical SOAP vectors; keep one of each (``site_census.distinct_rows``)."""
    first, _ = distinct_rows(x)
    return x[np.sort(first)]


def fit_classifier(
    references: list[Reference],
    soap: SoapSettings = SoapSettings(),
    fit: FitSettings = FitSettings(),
    progress: bool = False,
) -> Classifier:
    """Fit scaler, PCA and the reference environments from ideal references (no MD data needed)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from tqdm import tqdm

    if not references:
        raise ClassifierError("no reference structures to fit on")
    rng = np.random.default_rng(fit.seed)
    descriptor = soap.descriptor(periodic=True)
    ideal_feats, ideal_codes, fit_feats, unit_feats = [], [], [], []
    jobs = [(code, ref, s) for code, ref in enumerate(references, start=1) for s in fit.scales]
    for code, ref, scale in tqdm(jobs, desc="fit classifier", disable=not progress):
        atoms = supercell(ref.atoms, 2.0 * soap.r_cut + 1.0)
        atoms.set_cell(atoms.cell.array * scale, scale_atoms=True)
        every = descriptor.create(atoms.positions, atoms.cell.array, atoms.pbc)
        feats = _unique_rows(every)
        ideal_feats.append(feats)
        ideal_codes.append(np.full(len(feats), code))
        fit_feats.append(feats)
        if scale != 1.0:
            continue
        unit_feats.append(every)  # every oxygen, for the sites' shares (site_census)
        # displaced copies for the scaler/PCA fit, at the reference's own density only
        for sigma in fit.fit_noise:
            for _ in range(fit.copies_per_noise):
                noisy = atoms.copy()
                noisy.positions += sigma * rng.standard_normal(noisy.positions.shape)
                fit_feats.append(descriptor.create(noisy.positions, noisy.cell.array, noisy.pbc))
    ideal = np.concatenate(ideal_feats)
    train = np.concatenate(fit_feats)
    scaler = StandardScaler().fit(train)
    scale = np.maximum(scaler.scale_, fit.scale_floor * np.median(scaler.scale_))
    scaled = (train - scaler.mean_) / scale
    n_components = min(fit.n_components, scaled.shape[0], scaled.shape[1])
    pca = PCA(n_components=n_components, random_state=fit.seed).fit(scaled)
    clf = Classifier(
        names=[r.name for r in references],
        soap=soap,
        scaler_mean=scaler.mean_.astype(np.float64),
        scaler_scale=scale.astype(np.float64),
        pca_mean=pca.mean_.astype(np.float64),
        pca_components=pca.components_.astype(np.float64),
        ref_features=np.zeros((len(ideal), n_components)),  # filled in just below
        ref_codes=np.concatenate(ideal_codes).astype(np.int32),
    )
    clf.ref_features = clf.reduce(ideal)
    if len(unit_feats) == len(references):
        clf.sites = site_table_of(clf, unit_feats)
        clf.rings = fit_ring_table(references, clf.sites.counted_codes())
    return clf
