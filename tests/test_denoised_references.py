"""Reference environments as the denoiser leaves them: thinning, which input sees them, export, the file."""

from __future__ import annotations

import numpy as np
import pytest

from icephase_lmp.classifier import Classifier
from icephase_lmp.cli import main
from icephase_lmp.denoise import denoise
from icephase_lmp.denoised_references import DenoisedReferenceSettings, cover
from icephase_lmp.export import export_run
from icephase_lmp.model_file import load_model
from icephase_lmp.references import supercell

from conftest import SHIPPED_MODEL


def copy_of(clf: Classifier) -> Classifier:
    return Classifier.from_bytes(clf.to_bytes())


def test_cover_keeps_every_point_within_the_radius(rng):
    x = rng.normal(size=(600, 5))
    keep = cover(x, 1.5)
    kept = x[keep]
    to_kept = np.sqrt(((x[:, None, :] - kept[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert to_kept.max() <= 1.5
    among = np.sqrt(((kept[:, None, :] - kept[None, :, :]) ** 2).sum(-1)) + np.eye(len(kept)) * 1e9
    assert among.min() > 1.5  # and nothing redundant was kept
    assert 1 < len(keep) < len(x)


def test_raw_input_is_compared_with_the_ideal_references_only(classifier, rng):
    clf = copy_of(classifier)
    query = rng.normal(size=(4, clf.ref_features.shape[1])) * 5.0
    before = clf.classify_reduced(query, "euclidean", 1e9, denoised=False)
    clf.add_references(query, np.full(4, 3), denoised=True)
    den = clf.classify_reduced(query, "euclidean", 1e9, denoised=True)
    raw = clf.classify_reduced(query, "euclidean", 1e9, denoised=False)
    assert np.allclose(den.distances, 0.0, atol=1e-6) and np.all(den.codes == 3)
    assert np.array_equal(raw.distances, before.distances) and np.all(raw.distances > 1.0)
    with pytest.raises(ValueError, match="codes must lie in 1..7"):
        clf.add_references(query[:1], np.array([8]), denoised=True)


def test_flags_survive_the_file_and_old_files_load_as_ideal(classifier, rng):
    clf = copy_of(classifier)
    clf.add_references(rng.normal(size=(3, clf.ref_features.shape[1])), np.array([1, 2, 3]), denoised=True)
    back = copy_of(clf)
    assert back.ref_denoised.sum() == 3 and len(back.ref_denoised) == len(clf.ref_codes)
    # a classifier saved before the flags existed: every environment is ideal
    old = copy_of(classifier)
    assert not old.ref_denoised.any() and len(old.ref_denoised) == len(old.ref_codes)


def test_denoised_references_bring_denoised_ice_iii_closer(classifier, references, tmp_path):
    """Export with the shipped denoiser: noisy ice III after denoising lies much nearer the new references."""
    out = export_run(
        SHIPPED_MODEL, copy_of(classifier), tmp_path / "m.pth", iterations=8,
        denoised_references=DenoisedReferenceSettings(sigmas=(0.1, 0.25), copies=1),
    )
    model = load_model(out)
    clf = model.classifier
    assert clf.ref_denoised.sum() > 0 and (~clf.ref_denoised).sum() == len(classifier.ref_codes)
    assert set(np.unique(clf.ref_codes[clf.ref_denoised])) == set(range(1, 8))
    assert not any(k.startswith("denoised/") for k in model.metadata["thresholds"])
    atoms = supercell(references[3].atoms, 16.0)  # ice III
    noisy = atoms.positions + np.random.default_rng(99).normal(0.0, 0.25, atoms.positions.shape)
    d = denoise(model.denoiser, noisy, atoms.cell.array, (True,) * 3, model.r_max, 8)
    reduced = clf.reduce(clf.soap_features(d.positions, atoms.cell.array))
    with_den = clf.classify_reduced(reduced, "euclidean", 1e9, denoised=True)
    ideal_only = clf.classify_reduced(reduced, "euclidean", 1e9, denoised=False)
    assert np.all(with_den.nearest == 4)
    assert np.median(with_den.distances) < 0.7 * np.median(ideal_only.distances)


def test_cli_reexports_a_model_file_with_both_kinds_of_reference(tmp_path, capsys):
    out = tmp_path / "again.pth"
    assert main(["export", str(SHIPPED_MODEL), "--out", str(out), "--threshold", "denoised/euclidean=9.5"]) == 0
    model = load_model(out)
    assert model.classifier.ref_denoised.sum() > 1000
    assert model.classifier.threshold("euclidean", denoised=True) == 9.5
    assert main(["inspect", str(out)]) == 0
    assert "as the denoiser leaves them" in capsys.readouterr().out
    assert main(["export", str(SHIPPED_MODEL), "--out", str(out), "--ideal-references-only"]) == 0
    assert load_model(out).classifier.ref_denoised.sum() == 0


def test_the_soap_only_pipeline_ignores_the_denoised_references(shipped_model, references):
    """`icephase classify --no-denoise` (and its calibration) measure raw positions against ideal environments."""
    from icephase_lmp.pipeline import Pipeline

    clf = shipped_model.classifier
    assert clf.ref_denoised.any()
    atoms = supercell(references[3].atoms, 16.0)  # ice III
    noisy = atoms.positions + np.random.default_rng(7).normal(0.0, 0.1, atoms.positions.shape)
    raw = Pipeline(shipped_model, use_denoiser=False, threshold=1e9).run(noisy, atoms.cell.array, (True,) * 3)
    ideal, _ = clf.references(denoised=False)
    from icephase_lmp.classifier import nearest_reference

    from icephase_lmp.geometry import wrap_positions

    # (the pipeline classifies the positions wrapped into the cell)
    wrapped = wrap_positions(noisy, atoms.cell.array, (True,) * 3)
    expect = nearest_reference(clf.reduce(clf.soap_features(wrapped, atoms.cell.array)), ideal, "euclidean")[1]
    np.testing.assert_allclose(raw.distances, expect, rtol=1e-10)
    both = clf.classify(noisy, atoms.cell.array, metric="euclidean", threshold=1e9, denoised=True)
    assert np.any(both.distances < raw.distances - 1e-6)  # the test would not notice a mix-up otherwise
