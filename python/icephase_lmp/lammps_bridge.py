"""What the LAMMPS plugin calls inside its embedded Python interpreter.

The plugin denoises with libtorch itself, then hands each rank's atoms to :func:`classify` as one open
cloud: the rank's local oxygens first (the centres), then its ghost oxygens (their surroundings). No
periodic box is involved: the ghost atoms already sit at their image positions. Where the model has a phase
vote (``phase_vote``), the plugin then sends every atom's code to its ghost copies and calls :func:`vote`
once. The boundary step
(``boundary``) runs in rounds: between two rounds the plugin sends every atom's code to its ghost copies
(a forward communication) and calls :func:`grow` with the codes of the whole cloud; the first-shell test is
made there, on the same cloud, so that nothing but codes travels between the rounds (it is made once per call
and kept for the later rounds, and only around the local atoms: the ghosts of a small box outnumber them);
where the model has the support check (``support_radius``) and a round changed a code, the codes go to the
ghosts once more and the plugin calls :func:`support`. For small crystallites (``small_cluster_rounds``) the
plugin then finds each ice cluster's size: passes of :func:`cluster_ids`, the IDs sent to the ghosts between
passes, until none changes, and a count over all ranks; then more rounds and a support check as before,
the larger clusters' atoms carrying the other-crystal code meanwhile (with ``convex_support``, the sizes of
the clusters after those rounds are found the same way and go to :func:`support`). Last, the plugin sends
every atom's reduced SOAP vector (from :func:`classify`) to its ghost copies and calls
:func:`other_crystal`; where any atom is then crystal-labelled (a phase or other crystal) and any liquid, it
sends the codes once more and calls :func:`settle`. Any exception raised here is turned into a LAMMPS error by the plugin, on every rank.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .boundary import BoundarySettings, ShellOrder, Shells, grow_once, shell_order, supported
from .classifier import Classifier
from .denoiser_kernel import radial_tables
from .geometry import cloud_pairs
from .model_file import COMPACT_FILE, read_classifier, read_metadata, read_weights
from .other_crystal import first_look_misses as first_look_misses_of
from .other_crystal import (
    REPEAT_TEST_ITERATIONS,
    Pairs,
    enclose_and_isolate,
    find_other_crystal,
    join_phase_inside,
    liquid_pairs,
    second_look_centres,
)
from .other_crystal import repeat_vectors as repeat_vectors_of
from .phase_vote import PhaseVoteSettings, vote_in_cloud
from .phases import LIQUID, MIN_OXYGEN_DISTANCE, OTHER_CRYSTAL, TOO_CLOSE_DISTANCE, denoising_limits
from .ring_census import foreign_ring_rows
from .ring_census import ring_flags as ring_flags_of
from .site_census import foreign_rows
from .site_census import site_types as site_types_of

_CLASSIFIERS: dict[str, Classifier] = {}


def model_metadata_json(model_path: str) -> str:
    """The model's metadata as JSON text, for the plugin's init-time log and checks.

    ``read_metadata`` validates it and checks the archive's checksums. Added under ``"policy"``: the
    limits that the compute applies exactly as the offline pipeline does, from their one definition
    (the oxygen distance below which a pair is not water, the denoising step limits, the other-crystal code
    and the iterations before the positions its repeat test reads)."""
    import json

    meta = read_metadata(model_path)
    # model files exported before the boundary step existed get its defaults, as their classifier does
    # (and those from before a later setting, the value that keeps what they were validated with)
    meta["boundary"] = BoundarySettings.from_dict(meta.get("boundary")).to_dict()
    # and those from before the phase vote, its settings (off)
    meta.setdefault("phase_vote", PhaseVoteSettings().to_dict())
    clf = _classifier(model_path)
    meta["policy"] = {"min_oxygen_distance": MIN_OXYGEN_DISTANCE, "too_close_distance": TOO_CLOSE_DISTANCE,
                      "other_crystal_code": OTHER_CRYSTAL, "repeat_test_iterations": REPEAT_TEST_ITERATIONS,
                      "reduced_features": int(clf.pca_components.shape[0]),
                      # the phases the site census counts (none: a file without a site table)
                      "census_phases": [clf.names[c - 1] for c in clf.sites.counted_codes()],
                      # the phases the ring census counts (none: a file without a ring table)
                      "ring_census_phases": [clf.names[c - 1] for c in clf.rings.counted_codes()],
                      "ring_census_codes": [int(c) for c in clf.rings.counted_codes()],
                      **denoising_limits()}
    return json.dumps(meta)


def compact_constants(model_path: str) -> "dict[str, np.ndarray]":
    """The compact denoiser's constants stored in the model file (``compact_denoiser.npz``, as
    ``compact_denoiser.to_arrays`` names them), float32; empty for a file without them. The compute runs
    its layers on CPU from these with compiled message sums (src/compute_icephase/icephase_compact_layers.cpp)
    instead of the TorchScript module's, which the same file holds frozen, without named weights. Besides
    the stored arrays, ``layer{k}.radial_table`` (denoiser_kernel.radial_tables)."""
    stored = read_weights(model_path, COMPACT_FILE)
    if not stored:
        return {}
    # and each layer's radial weights against the edge length (``layer{k}.radial_table``), which the compute
    # interpolates as the offline kernel does instead of running the radial MLP per edge
    tables = radial_tables(stored)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in {**stored, **tables}.items()}


def _classifier(model_path: str) -> Classifier:
    clf = _CLASSIFIERS.get(model_path)
    if clf is None:
        clf = _CLASSIFIERS[model_path] = read_classifier(model_path)
    return clf


def _cloud(positions: np.ndarray, n_local: int) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if not 0 <= n_local <= len(positions):
        raise ValueError(f"n_local={n_local} is outside 0..{len(positions)}")
    return positions


def classify(
    model_path: str, positions: np.ndarray, n_local: int, metric: str, threshold: float, denoised: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase codes (int32), distances (float64) and reduced SOAP vectors (float64, (n_local, k)) of the first
    ``n_local`` atoms of ``positions``.

    ``denoised``: the positions come from the denoiser (compare with every reference environment), or are
    raw (iterations 0: the ideal reference environments only, as ``icephase classify --no-denoise``)."""
    clf = _classifier(model_path)
    positions = _cloud(positions, n_local)
    reduced = clf.reduce(clf.soap_features(positions, cell=None, centers=np.arange(n_local)))
    result = clf.classify_reduced(reduced, metric, threshold, denoised=denoised)
    return (result.codes.astype(np.int32), result.distances.astype(np.float64),
            np.ascontiguousarray(reduced, dtype=np.float64))


def _cloud_codes(function: str, positions: np.ndarray, n_local: int, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cloud's positions and the code of every atom in it, checked to match: what :func:`grow`,
    :func:`vote` and :func:`settle` are handed."""
    positions = _cloud(positions, n_local)
    codes = np.asarray(codes, dtype=np.int32).ravel()
    if len(codes) != len(positions):
        raise ValueError(f"{function}: {len(codes)} codes for {len(positions)} atoms")
    return positions, codes


def grow(model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray) -> np.ndarray:
    """One round of the boundary step for the first ``n_local`` atoms: ``codes`` holds the current code of
    every atom of the cloud (ghosts: their owner's, by forward communication). Returns the new codes of the
    local atoms (int32). The compute calls it on denoised positions only (iterations 0 switch it off)."""
    clf = _classifier(model_path)
    positions, codes = _cloud_codes("grow", positions, n_local, codes)
    shells, order = _first_shells(clf.boundary, positions, n_local)
    return grow_once(codes, order, shells, clf.boundary).astype(np.int32)


def support(model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray, before: np.ndarray,
            cluster_sizes: np.ndarray | None = None) -> np.ndarray:
    """The boundary step's support check (``boundary.supported``) for the first ``n_local`` atoms: ``codes`` holds
    every atom's code after the rounds (ghosts: their owner's, by forward communication), ``before`` the local
    atoms' codes before the rounds, ``cluster_sizes`` (step 5's check with ``convex_support``; else None) the
    size of each local atom's ice cluster after the rounds, counted over all ranks. Returns the new codes of
    the local atoms (int32). The cloud reaches the SOAP reach beyond the local atoms, farther than the support
    radius (the classifier checks)."""
    clf = _classifier(model_path)
    positions, codes = _cloud_codes("support", positions, n_local, codes)
    before = np.asarray(before, dtype=np.int32).ravel()
    if len(before) != n_local:
        raise ValueError(f"support: {len(before)} codes before the rounds for {n_local} local atoms")
    if cluster_sizes is not None:
        cluster_sizes = np.asarray(cluster_sizes, dtype=np.int64).ravel()
        if len(cluster_sizes) != n_local:
            raise ValueError(f"support: {len(cluster_sizes)} cluster sizes for {n_local} local atoms")
    # only the molecules the rounds made ice are checked: the pairs of those alone
    grown = np.flatnonzero((before == LIQUID) & (codes[:n_local] > LIQUID))
    i, j = cloud_pairs(positions, grown, clf.boundary.support_radius)
    return supported(before, codes, i, j, clf.boundary, cluster_sizes).astype(np.int32)


def cluster_ids(model_path: str, positions: np.ndarray, n_local: int, ids: np.ndarray) -> np.ndarray:
    """One pass of the small-crystallite step's cluster search (``boundary.extend_ice``, step 5) for the first
    ``n_local`` atoms: ``ids`` holds every cloud atom's cluster ID (0: not ice; ghosts: their owner's, by
    forward communication). Each local ice atom takes the smallest ID among the ice atoms bonded to it
    (first-shell bonds, ``BoundarySettings.shell``) through the cloud; the plugin repeats the pass until no rank
    changes an ID, when every ice atom carries the smallest atom ID of its cluster. Returns the local atoms'
    IDs (int32)."""
    clf = _classifier(model_path)
    positions, ids = _cloud_codes("cluster_ids", positions, n_local, ids)
    out = ids[:n_local].copy()
    ice = np.flatnonzero(ids > 0)
    if len(ice) == 0:
        return out
    i, j = cloud_pairs(positions[ice], np.arange(len(ice)), clf.boundary.shell)
    _, component = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(ice), len(ice))),
                                        directed=False)
    smallest = np.full(component.max() + 1, np.iinfo(np.int32).max, dtype=np.int64)
    np.minimum.at(smallest, component, ids[ice])
    found = np.zeros(len(ids), dtype=np.int64)
    found[ice] = smallest[component]
    return np.where(out > 0, found[:n_local], 0).astype(np.int32)


def vote(model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray) -> np.ndarray:
    """The phase vote (``phase_vote``) for the first ``n_local`` atoms: ``codes`` holds the classifier's code of
    every atom of the cloud (ghosts: their owner's, by forward communication). Returns the new codes of the
    local atoms (int32)."""
    clf = _classifier(model_path)
    positions, codes = _cloud_codes("vote", positions, n_local, codes)
    return vote_in_cloud(codes, positions, n_local, clf.phase_vote).astype(np.int32)


#: the first-shell test of the last cloud :func:`grow` saw: the rounds of one call of the compute send the same
#: positions each time (only the codes change), so the neighbour search and q3 are made once per call
_LAST_SHELLS: dict[bytes, tuple[Shells, ShellOrder]] = {}


def _first_shells(settings: BoundarySettings, positions: np.ndarray, n_local: int) -> tuple[Shells, ShellOrder]:
    key = hashlib.blake2b(positions.tobytes() + repr((n_local, settings)).encode(), digest_size=16).digest()
    found = _LAST_SHELLS.get(key)
    if found is None:
        shells = Shells.around_centres(positions, n_local, settings.shell)
        found = (shells, shell_order(shells, len(positions), settings, centres=n_local))
        _LAST_SHELLS.clear()
        _LAST_SHELLS[key] = found
    return found


#: the pairs the repeat test compares in the last cloud the other-crystal step saw: first_look_misses,
#: repeat_vectors and other_crystal read the same positions and codes in one call of the compute
_LAST_LIQUID_PAIRS: dict[bytes, Pairs] = {}


def _liquid_pairs(positions: np.ndarray, codes: np.ndarray) -> Pairs:
    key = hashlib.blake2b(positions.tobytes() + codes.tobytes(), digest_size=16).digest()
    found = _LAST_LIQUID_PAIRS.get(key)
    if found is None:
        found = liquid_pairs(codes, positions, None, (False, False, False))
        _LAST_LIQUID_PAIRS.clear()
        _LAST_LIQUID_PAIRS[key] = found
    return found


def _step_arrays(step: str, positions: np.ndarray, n_local: int, codes: np.ndarray,
                 **vectors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The cloud's positions, the local codes (int32) and the named per-atom vectors (float64, one row per
    cloud atom), checked against each other."""
    positions = _cloud(positions, n_local)
    codes = np.asarray(codes, dtype=np.int32).ravel()
    out = {}
    for name, values in vectors.items():
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float64)
        if len(codes) != n_local or values.ndim != 2 or len(values) != len(positions):
            raise ValueError(f"{step}: {len(codes)} codes and {values.shape} {name} vectors for {len(positions)} "
                             f"atoms, {n_local} local")
        out[name] = values
    return positions, codes, out


def other_crystal(
    model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray, reduced: np.ndarray, metric: str,
    threshold: float, early_positions: np.ndarray | None = None, early_reduced: np.ndarray | None = None,
) -> np.ndarray:
    """The "other crystal" step (``other_crystal.py``) for the first ``n_local`` atoms: ``codes`` their codes
    after the boundary step, ``reduced`` the reduced SOAP vector of every atom of the cloud (ghosts: their
    owner's, by forward communication; NaN where none was computed, which never counts as a repeat);
    ``early_positions`` and ``early_reduced``, where given, the same after ``REPEAT_TEST_ITERATIONS``
    (:func:`repeat_vectors`). Returns the new codes of the local atoms (int32)."""
    positions, codes, v = _step_arrays("other_crystal", positions, n_local, codes, reduced=reduced,
                                       early_reduced=early_reduced)
    early = None
    if early_positions is not None and "early_reduced" in v:
        early = (v["early_reduced"], _cloud(early_positions, n_local))
    return find_other_crystal(codes, v["reduced"], positions, None, (False, False, False), metric, threshold, early,
                              _liquid_pairs(positions, codes))


def first_look_misses(
    model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray, reduced: np.ndarray, metric: str,
    threshold: float,
) -> np.ndarray:
    """1 for the local atoms the repeat test looks at a second time (``other_crystal.first_look_misses``:
    liquid-labelled, with a near twin but without three repeats at the classified positions), else 0 (int32,
    n_local); arguments as for :func:`other_crystal`. The compute sends these flags to the ghosts for
    :func:`repeat_vectors`."""
    positions, codes, v = _step_arrays("first_look_misses", positions, n_local, codes, reduced=reduced)
    misses = first_look_misses_of(codes, v["reduced"], metric, threshold, _liquid_pairs(positions, codes))
    return misses.astype(np.int32)


def repeat_vectors(
    model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray, reduced: np.ndarray, metric: str,
    threshold: float, early_positions: np.ndarray, misses: np.ndarray,
) -> np.ndarray:
    """Reduced SOAP vectors (float64, (n_local, k)) at ``early_positions`` (the cloud after
    ``REPEAT_TEST_ITERATIONS``) of the local atoms the repeat test reads at its second look
    (``other_crystal.second_look_centres``: the misses and their near twins), NaN for the others; ``misses``
    holds :func:`first_look_misses`'s flag of every cloud atom (ghosts: their owner's)."""
    positions, codes, v = _step_arrays("repeat_vectors", positions, n_local, codes, reduced=reduced)
    misses = np.asarray(misses).ravel()
    if len(misses) != len(positions):
        raise ValueError(f"repeat_vectors: {len(misses)} flags for {len(positions)} atoms")
    second = second_look_centres(codes, v["reduced"], misses != 0, metric, threshold, _liquid_pairs(positions, codes))
    return repeat_vectors_of(_classifier(model_path), second, _cloud(early_positions, n_local), None,
                             (False, False, False))


def join_inside(model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray) -> np.ndarray:
    """The first part of the "other crystal" step's last pass (``other_crystal.join_phase_inside``: phase labels
    inside other crystal join it) for the first ``n_local`` atoms: ``codes`` holds every atom's code after the
    repeat test (ghosts: their owner's, by forward communication). Returns the new codes of the local atoms
    (int32)."""
    positions, codes = _cloud_codes("join_inside", positions, n_local, codes)
    return join_phase_inside(codes, positions, None, (False, False, False), n_local).astype(np.int32)


def settle(model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray) -> np.ndarray:
    """The second part (``other_crystal.enclose_and_isolate``: molecules enclosed by other crystal join it,
    crystal labels isolated in liquid become liquid) for the first ``n_local`` atoms: ``codes`` holds every
    atom's code after :func:`join_inside` (ghosts: their owner's, by forward communication). Returns the new
    codes of the local atoms (int32)."""
    clf = _classifier(model_path)
    positions, codes = _cloud_codes("settle", positions, n_local, codes)
    return enclose_and_isolate(codes, positions, None, (False, False, False), clf.boundary.shell,
                               n_local).astype(np.int32)


def site_types(model_path: str, reduced: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The site census's site of each local atom (``site_census.site_types``: the nearest site of the phase the
    classifier gave it; -1 where none is counted): ``reduced`` (n_local, k) the local atoms' reduced SOAP
    vectors, ``codes`` (n_local,) the classifier's codes, before the vote. int32, (n_local,)."""
    codes = np.asarray(codes, dtype=np.int32).ravel()
    reduced = np.asarray(reduced, dtype=np.float64).reshape(len(codes), -1)
    return site_types_of(_classifier(model_path).sites, reduced, codes).astype(np.int32)


def foreign_sites(model_path: str, rows: np.ndarray) -> np.ndarray:
    """For rows (cluster ID, site, molecules) gathered from every rank (int32, (m, 3)): the phase code of the
    row's site where its cluster holds that phase in proportions that are not the phase's
    (``site_census.foreign_rows``), else 0. int32, (m,). Every rank gets the same rows and answers."""
    clf = _classifier(model_path)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    foreign = foreign_rows(clf.sites, rows)
    out = np.zeros(len(rows), dtype=np.int32)
    out[foreign] = clf.sites.codes[rows[foreign, 1]]
    return out


def ring_flags(model_path: str, positions: np.ndarray, n_local: int, codes: np.ndarray) -> np.ndarray:
    """The ring census's flag of each of the first ``n_local`` atoms (``ring_census.ring_flags``: 1 a molecule
    of a counted phase whose rings see crystal only, on a signature its phase has not; 0 on one of its phase's;
    -1 not counted): ``positions`` the denoised cloud, ``codes`` every cloud atom's code after the boundary step (ghosts: their
    owner's). The cloud reaches the SOAP reach + 0.5 A beyond the local atoms, farther than every ring of six
    through a local atom's neighbours. int32, (n_local,)."""
    positions, codes = _cloud_codes("ring_flags", positions, n_local, codes)
    return ring_flags_of(_classifier(model_path).rings, positions, None, (False, False, False), codes,
                         n_local).astype(np.int32)


def foreign_rings(model_path: str, rows: np.ndarray) -> np.ndarray:
    """For rows (cluster ID, phase code, foreign 0/1, molecules) gathered from every rank (int32, (m, 4)): the
    row's phase code where its cluster holds that phase on rings the phase has not
    (``ring_census.foreign_ring_rows``), else 0. int32, (m,). Every rank gets the same rows and answers."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    out = np.zeros(len(rows), dtype=np.int32)
    foreign = foreign_ring_rows(rows)
    out[foreign] = rows[foreign, 1]
    return out
