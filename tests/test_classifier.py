import numpy as np
import pytest

from conftest import liquid_like
from icephase_lmp.classifier import Classifier, pairwise_distance
from icephase_lmp.errors import ClassifierError
from icephase_lmp.phases import LIQUID
from icephase_lmp.references import supercell


def test_every_ideal_reference_classifies_as_itself(classifier, references):
    for code, ref in enumerate(references, start=1):
        atoms = supercell(ref.atoms, 14.0)
        out = classifier.classify(atoms.positions, atoms.cell.array, (True,) * 3, threshold=1.0)
        assert np.all(out.codes == code), ref.name
        assert out.distances.max() < 1e-3


def test_ideal_references_classify_at_other_densities(classifier, references):
    # MD densities differ from GenIce2's by several percent (ice VII: 1.60 vs 1.78 g/cm3)
    for code, ref in enumerate(references, start=1):
        atoms = supercell(ref.atoms, 14.0)
        atoms.set_cell(atoms.cell.array * 0.97, scale_atoms=True)
        out = classifier.classify(atoms.positions, atoms.cell.array, (True,) * 3, threshold=1e9)
        assert np.all(out.codes == code), ref.name


def test_a_classifier_without_a_phase_never_names_it_and_leaves_the_rest(classifier, references):
    ic = [r.name for r in references].index("Ic")
    without = classifier.without_phase("Ic")
    assert without.names == classifier.names and without.thresholds == classifier.thresholds
    assert not np.any(without.ref_codes == ic + 1) and np.any(classifier.ref_codes == ic + 1)
    # the copy has its own search structures: the original still finds Ic
    for code, ref in enumerate(references, start=1):
        atoms = supercell(ref.atoms, 14.0)
        full = classifier.classify(atoms.positions, atoms.cell.array, (True,) * 3, threshold=1e9)
        left = without.classify(atoms.positions, atoms.cell.array, (True,) * 3, threshold=1e9)
        assert np.all(full.codes == code), ref.name
        if code == ic + 1:
            assert np.all(left.codes != code) and left.distances.min() > 1e-3
        else:
            assert np.all(left.codes == code), ref.name
    with pytest.raises(ClassifierError, match="no phase 'XV'"):
        classifier.without_phase("XV")


def test_liquid_like_random_configuration_is_not_ice(classifier, references, rng):
    pos, cell = liquid_like(300, 1.0, rng)
    out = classifier.classify(pos, cell, (True,) * 3, threshold=1e9)
    # ideal ice environments sit at distance ~0; a structureless liquid must sit far from all of them
    ice = supercell(references[0].atoms, 14.0)
    # small residual noise, as after denoising
    noisy = ice.positions + 0.05 * rng.standard_normal(ice.positions.shape)
    ice_d = classifier.classify(noisy, ice.cell.array, (True,) * 3, threshold=1e9).distances
    assert np.min(out.distances) > np.max(ice_d)
    thr = 0.5 * (np.max(ice_d) + np.min(out.distances))
    labels = classifier.classify(pos, cell, (True,) * 3, threshold=thr).codes
    assert np.all(labels == LIQUID)


def test_centres_inside_an_open_cloud_match_the_periodic_result(classifier, references):
    """The LAMMPS plugin passes local atoms as centres and ghosts as an open cloud around them."""
    atoms = supercell(references[3].atoms, 14.0)  # ice III
    atoms.positions += np.random.default_rng(0).normal(0, 0.15, atoms.positions.shape)
    atoms.wrap()
    periodic = classifier.classify(atoms.positions, atoms.cell.array, (True,) * 3, threshold=1e9)
    # build images of all atoms within r_cut + 1 of the box: the ghost shell
    cell = atoms.cell.array
    images = [atoms.positions + i * cell[0] + j * cell[1] + k * cell[2]
              for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)]
    ghosts = np.concatenate(images)
    frac = ghosts @ np.linalg.inv(cell)
    margin = (classifier.soap.reach + 0.5) / np.linalg.norm(cell, axis=1)
    keep = np.all((frac > -margin) & (frac < 1 + margin), axis=1)
    cloud = np.concatenate([atoms.positions, ghosts[keep]])
    n = len(atoms)
    open_cloud = classifier.classify(cloud, None, centers=np.arange(n), threshold=1e9)
    assert np.array_equal(open_cloud.codes, periodic.codes)
    assert np.allclose(open_cloud.distances, periodic.distances, rtol=1e-6, atol=1e-8)


def test_distance_metrics():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert np.allclose(pairwise_distance(a, b, "euclidean"), [[5.0, np.hypot(1, 4)], [1.0, 1.0]])
    cos = pairwise_distance(a, b[1:], "cosine")
    assert np.allclose(cos[:, 0], [1 - 3 / 5, 0.0])
    with pytest.raises(ClassifierError, match="unknown metric"):
        pairwise_distance(a, b, "manhattan")


def test_fit_is_well_conditioned(classifier):
    # the scaler must not divide by ~0 (the rank-deficiency of ideal-only fitting)
    assert classifier.scaler_scale.min() >= 1e-2 * np.median(classifier.scaler_scale) * (1 - 1e-12)
    assert classifier.pca_components.shape[0] == 30
    assert np.all(np.isfinite(classifier.ref_features))


def test_save_load_round_trip_without_pickle(classifier, tmp_path, rng):
    classifier.thresholds = {"denoised/euclidean": 12.5}
    path = tmp_path / "clf.npz"
    classifier.save(path)
    with np.load(path, allow_pickle=False) as npz:  # must load with pickle disabled
        assert "header" in npz.files
    back = Classifier.load(path)
    pos, cell = liquid_like(60, 1.0, rng)
    a = classifier.classify(pos, cell, threshold=12.5)
    b = back.classify(pos, cell, threshold=12.5)
    assert np.array_equal(a.codes, b.codes) and np.allclose(a.distances, b.distances)
    assert back.threshold("euclidean", denoised=True) == 12.5


def test_corrupt_classifier_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ClassifierError, match="not a valid icephase classifier"):
        Classifier.load(bad)
    with pytest.raises(ClassifierError, match="does not exist"):
        Classifier.load(tmp_path / "missing.npz")


def test_nan_positions_rejected(classifier):
    pos = np.zeros((3, 3))
    pos[1, 2] = np.nan
    with pytest.raises(ClassifierError, match="NaN"):
        classifier.classify(pos, np.eye(3) * 20, threshold=1.0)


def test_missing_threshold_says_how_to_calibrate(classifier):
    classifier.thresholds = {}
    with pytest.raises(ClassifierError, match="icephase calibrate"):
        classifier.threshold("cosine", denoised=False)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_nearest_reference_agrees_with_the_full_distance_matrix(metric, rng):
    from icephase_lmp.classifier import nearest_reference, pairwise_distance

    a, b = rng.normal(size=(250, 30)), rng.normal(size=(700, 30))
    best, dist = nearest_reference(a, b, metric, chunk=64)  # several chunks, a ragged last one
    full = pairwise_distance(a, b, metric)
    assert np.array_equal(best, full.argmin(axis=1))
    np.testing.assert_allclose(dist, full.min(axis=1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_compiled_scan_gives_the_float64_answer_ties_included(metric, rng):
    """_soap_kernel.nearest_scores (float32, tiles of 16 references, 4 rows at a time) against numpy's blocks
    and the float64 distance matrix: ragged tiles and row blocks, exact ties (a duplicated reference), near
    ties within float32 rounding, and a row with a NaN. A tie goes to the float64 search row by row, so the
    two scans agree on it, and on which batch of rows it came in."""
    from icephase_lmp import soap
    from icephase_lmp.classifier import nearest_reference, pairwise_distance

    if soap._soap_kernel is None:
        pytest.skip("icephase_lmp._soap_kernel was not built")
    b = rng.normal(size=(701, 30))
    b = np.concatenate([b, b[:50]])  # references 701..750 repeat 0..49: exact ties
    a = np.concatenate([rng.normal(size=(250, 30)), b[[3, 10, 700]], b[[5]] + 1e-9, 3.0 * rng.normal(size=(2, 30))])
    a[-1, 7] = np.nan
    compiled = nearest_reference(a, b, metric, compiled=True)
    plain = nearest_reference(a, b, metric, compiled=False)
    np.testing.assert_array_equal(compiled[0], plain[0])
    np.testing.assert_array_equal(compiled[1], plain[1])
    # the same rows searched alone or in another batch: the same answers
    alone = [nearest_reference(a[r : r + 1], b, metric)[0][0] for r in range(len(a))]
    np.testing.assert_array_equal(compiled[0], alone)
    reversed_batch = nearest_reference(a[::-1], b, metric)[0][::-1]
    np.testing.assert_array_equal(compiled[0], reversed_batch)
    # the float64 nearest vector (of a tie, either copy)
    full = pairwise_distance(a[:-1], b, metric)
    np.testing.assert_array_equal(b[compiled[0][:-1]], b[full.argmin(axis=1)])
    # (the matrix's |a|^2 + |b|^2 - 2 a.b loses the 5e-9 of row 253 to cancellation; row_distance keeps it)
    np.testing.assert_allclose(compiled[1][:-1], full.min(axis=1), rtol=0, atol=1e-6)
    assert np.array_equal(b[compiled[0][250:254]], b[[3, 10, 700, 5]])
    assert np.isnan(compiled[1][-1])
    assert any(compiled[0][r] > 700 or full[r, compiled[0][r] + 701] == full[r].min() for r in range(250)
               if full[r].argmin() < 50)  # some rows do meet a tie


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_indexed_search_gives_the_plain_answer_ties_included(metric, rng):
    """ReferenceIndex + _soap_kernel.nearest_indexed against the plain float64 search: clustered references
    (a few phases, many environments each) with a block of one repeated vector (exact ties) and an empty
    group, rows near a cluster (ice), far from all (liquid), on a reference, beside a
    repeated one, and with a NaN; the same answers row by row, alone or in another batch."""
    from icephase_lmp import soap
    from icephase_lmp.classifier import ReferenceIndex, nearest_reference

    if soap._soap_kernel is None:
        pytest.skip("icephase_lmp._soap_kernel was not built")
    centres = 10.0 * rng.standard_normal((6, 30))
    refs = np.concatenate([c + rng.standard_normal((400, 30)) for c in centres])
    refs = np.concatenate([refs[:1000], np.repeat(refs[[7]], 120, axis=0), refs[1000:]])
    near = centres[rng.integers(0, 6, 300)] + 1.2 * rng.standard_normal((300, 30))
    far = 25.0 * rng.standard_normal((300, 30))
    a = np.concatenate([near, far, refs[[3, 2000]], refs[[7]] + 1e-9, refs[[1500]] + 1e-3])
    a = np.concatenate([a, a[:1]])
    a[-1, 4] = np.nan
    index = ReferenceIndex(refs, metric)
    assert np.array_equal(np.sort(index.order), np.arange(len(refs)))
    # a group left empty by the k-means steps (two centres picked from the repeated block) is skipped
    index.starts = np.concatenate([index.starts[:5], index.starts[4:]])
    index.centres = np.concatenate([index.centres[:4], index.centres[3:4] + 1.0, index.centres[4:]])
    plain = nearest_reference(a, refs, metric, compiled=False)
    indexed = nearest_reference(a, refs, metric, index=index)
    np.testing.assert_array_equal(indexed[0], plain[0])
    np.testing.assert_array_equal(indexed[1], plain[1])
    unsure = index.nearest(a)[1]
    assert unsure[-1] and unsure[602] and unsure.sum() < 10  # the NaN row and the tie, few others
    assert indexed[0][602] == 7  # of the repeated copies, the lowest index
    alone = [nearest_reference(a[r : r + 1], refs, metric, index=index)[0][0] for r in range(len(a))]
    np.testing.assert_array_equal(indexed[0], alone)
    np.testing.assert_array_equal(nearest_reference(a[::-1], refs, metric, index=index)[0][::-1], indexed[0])


def test_the_classifier_searches_with_the_index_and_agrees_with_the_tree(classifier, references, rng, monkeypatch):
    """classify_reduced builds a ReferenceIndex where the kernel was built and a ReferenceTree without it;
    the two give the same codes and distances on ice, noisy ice and liquid-like rows."""
    from icephase_lmp import soap
    from icephase_lmp.classifier import ReferenceIndex, ReferenceTree

    if soap._soap_kernel is None:
        pytest.skip("icephase_lmp._soap_kernel was not built")
    ice = supercell(references[0].atoms, 14.0)
    pos, cell = liquid_like(300, 1.0, rng)
    rows = np.concatenate([
        classifier.reduce(classifier.soap_features(ice.positions + s * rng.standard_normal(ice.positions.shape),
                                                   ice.cell.array)) for s in (0.0, 0.1, 0.3)
    ] + [classifier.reduce(classifier.soap_features(pos, cell))])
    threshold = float(np.median(classifier.classify_reduced(rows, "euclidean", 1e9).distances))
    indexed = classifier.classify_reduced(rows, "euclidean", threshold)
    assert isinstance(classifier._searches[(True, "euclidean")], ReferenceIndex)
    classifier._searches.clear()
    monkeypatch.setattr(soap, "_soap_kernel", None)
    tree = classifier.classify_reduced(rows, "euclidean", threshold)
    assert isinstance(classifier._searches[(True, "euclidean")], ReferenceTree)
    np.testing.assert_array_equal(indexed.codes, tree.codes)
    np.testing.assert_array_equal(indexed.nearest, tree.nearest)
    np.testing.assert_array_equal(indexed.distances, tree.distances)
    assert 0 < (indexed.codes == LIQUID).sum() < len(rows)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_reference_tree_gives_the_exact_nearest_reference(metric, rng):
    from icephase_lmp.classifier import ReferenceTree, nearest_reference

    # clustered references (like the model's: a few phases, many environments each) and queries near a
    # cluster (ice: the tree answers) or far from all (liquid: the matrix product answers)
    centres = 10.0 * rng.standard_normal((6, 30))
    refs = np.concatenate([c + rng.standard_normal((400, 30)) for c in centres])
    near = centres[rng.integers(0, 6, 300)] + 1.2 * rng.standard_normal((300, 30))
    far = 25.0 * rng.standard_normal((300, 30))
    queries = np.concatenate([near, far])
    plain_i, plain_d = nearest_reference(queries, refs, metric)
    brute = np.array([np.argmin(row_d) for row_d in
                      (np.linalg.norm(refs - q, axis=1) if metric == "euclidean"
                       else 1.0 - refs @ q / (np.linalg.norm(refs, axis=1) * np.linalg.norm(q)) for q in queries)])
    np.testing.assert_array_equal(plain_i, brute)
    tree = ReferenceTree(refs, metric)
    bound = np.median(plain_d)  # about half the rows within it
    hit = tree.within(queries, bound)[1]
    assert 0.2 < hit.mean() < 0.8
    tree_i, tree_d = nearest_reference(queries, refs, metric, tree=tree, bound=bound)
    np.testing.assert_array_equal(tree_i, plain_i)
    np.testing.assert_allclose(tree_d, plain_d, rtol=0, atol=1e-12)
