"""icephase_lmp.classify on ASE Atoms: the same labels as the Pipeline run by hand on the oxygens, stored
full-length in atoms.arrays on request."""

from __future__ import annotations

import numpy as np
import pytest

from icephase_lmp.phases import NOT_ANALYSED


@pytest.fixture(scope="module")
def wet_ice(references):
    """Noisy ice Ih oxygens with two hydrogens after each (O H H O H H ...), orthorhombic periodic cell."""
    from ase import Atoms

    from icephase_lmp.references import supercell

    ih = supercell(references[0].atoms, 20.0)
    rng = np.random.default_rng(11)
    oxygens = ih.positions + rng.normal(0.0, 0.2, ih.positions.shape)
    # the hydrogens only have to be there (and not be oxygens): 1 A away along +-x
    hydrogens = np.repeat(oxygens, 2, axis=0) + np.tile([[0.96, 0, 0], [-0.96, 0, 0]], (len(oxygens), 1))
    positions = np.empty((3 * len(oxygens), 3))
    positions[0::3], positions[1::3], positions[2::3] = oxygens, hydrogens[0::2], hydrogens[1::2]
    return Atoms("OHH" * len(oxygens), positions=positions, cell=ih.cell.array, pbc=True), oxygens


def test_classify_matches_the_pipeline_on_the_oxygens(wet_ice, shipped_model):
    import icephase_lmp
    from icephase_lmp.pipeline import Pipeline

    atoms, oxygens = wet_ice
    expected = Pipeline(shipped_model).run(oxygens, atoms.cell.array, (True, True, True))
    labels = icephase_lmp.classify(atoms)
    np.testing.assert_array_equal(labels.indices, np.arange(0, len(atoms), 3))
    np.testing.assert_array_equal(labels.codes, expected.codes)
    np.testing.assert_allclose(labels.distances, expected.distances, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(labels.clusters, expected.clusters.ids)
    assert labels.largest_cluster == expected.clusters.largest
    names = shipped_model.classifier.code_names
    assert labels.names == [names[c] for c in expected.codes]
    assert labels.fractions["Ih"] == pytest.approx(np.mean(expected.codes == 1))
    assert sum(labels.fractions.values()) == pytest.approx(1.0)
    assert labels.fractions["Ih"] > 0.95  # and it is ice Ih


def test_store_writes_full_length_arrays(wet_ice):
    import icephase_lmp

    atoms = wet_ice[0].copy()
    labels = icephase_lmp.classify(atoms, store=True)
    code, dist, cluster = (atoms.arrays[k] for k in ("icephase_code", "icephase_distance", "icephase_cluster"))
    assert len(code) == len(dist) == len(cluster) == len(atoms)
    hydrogen = atoms.symbols == "H"
    assert (code[hydrogen] == NOT_ANALYSED).all() and np.isnan(dist[hydrogen]).all() and (cluster[hydrogen] == 0).all()
    np.testing.assert_array_equal(code[~hydrogen], labels.codes)
    np.testing.assert_array_equal(dist[~hydrogen], labels.distances)


def test_store_survives_an_extxyz_round_trip(wet_ice, tmp_path):
    from ase.io import read, write

    import icephase_lmp

    atoms = wet_ice[0].copy()
    icephase_lmp.classify(atoms, store=True, denoise=False)
    write(tmp_path / "labelled.extxyz", atoms)
    back = read(tmp_path / "labelled.extxyz")
    np.testing.assert_array_equal(back.arrays["icephase_code"], atoms.arrays["icephase_code"])


def test_options_reach_the_pipeline(wet_ice, shipped_model):
    import icephase_lmp
    from icephase_lmp.pipeline import Pipeline

    atoms, oxygens = wet_ice
    raw = Pipeline(shipped_model, use_denoiser=False).run(oxygens, atoms.cell.array, (True, True, True))
    labels = icephase_lmp.classify(atoms, denoise=False)
    np.testing.assert_array_equal(labels.codes, raw.codes)
    np.testing.assert_allclose(labels.distances, raw.distances, rtol=1e-9, atol=1e-9)
    # a threshold of 0 makes everything liquid; a ready Pipeline and a model path are accepted too
    assert (icephase_lmp.classify(atoms, threshold=0.0).codes == 0).all()
    mine = Pipeline(shipped_model, use_denoiser=False)
    np.testing.assert_array_equal(icephase_lmp.classify(atoms, mine).codes, raw.codes)
    np.testing.assert_array_equal(icephase_lmp.classify(atoms, shipped_model.path, denoise=False).codes, raw.codes)


def test_selection_as_in_the_cli(wet_ice):
    import icephase_lmp
    from icephase_lmp.errors import TrajectoryError

    atoms = wet_ice[0]
    labels = icephase_lmp.classify(atoms, select="element O", denoise=False)
    assert len(labels.codes) == len(atoms) // 3
    with pytest.raises(TrajectoryError, match="element N"):
        icephase_lmp.classify(atoms, select="element N")
    with pytest.raises(ValueError, match="Pipeline"):
        from icephase_lmp.api import pipeline_for

        icephase_lmp.classify(atoms, pipeline_for(), denoise=False)


def test_package_import_stays_light():
    """`import icephase_lmp` must not import torch or MDAnalysis: the API is loaded on first use."""
    import subprocess
    import sys

    code = ("import sys, icephase_lmp\nassert callable(icephase_lmp.__getattr__)\n"
            "print(sorted(m for m in ('torch', 'MDAnalysis', 'ovito') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_lammps_bridge_classifies_without_torch_or_dscribes_descriptor_package():
    """The compute's first call pays for the bridge's imports: the compute runs the denoiser itself (no
    Python torch needed), and SOAP needs only DScribe's extension, not ``dscribe.descriptors`` (which
    imports scikit-learn and scipy.stats: 1.6 s)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom icephase_lmp import lammps_bridge\n"
            "from icephase_lmp.model_file import SHIPPED_MODEL\n"
            "pos = np.random.default_rng(0).uniform(0, 12, (60, 3))\n"
            "codes, dist, red = lammps_bridge.classify(str(SHIPPED_MODEL), pos, 20, 'euclidean', 7.7)\n"
            "assert len(codes) == 20 and np.isfinite(dist).all() and red.shape[0] == 20\n"
            "cloud = np.vstack([red, np.full((40, red.shape[1]), np.nan)])\n"
            "assert len(lammps_bridge.other_crystal(str(SHIPPED_MODEL), pos, 20, codes, cloud, 'euclidean', 7.7)) == 20\n"
            "print(sorted(m for m in ('torch', 'dscribe.descriptors', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_shipped_model_names_work_where_the_api_takes_a_model(wet_ice, tmp_path, monkeypatch):
    """A shipped model's name (with or without ".pth"), as the CLI and the compute's docs allow, loads that
    file through the Python API too (ASE here; MDAnalysis and OVITO go through the same `pipeline_for`), from
    any working directory. Before the fix the API resolved the bare name against the working directory."""
    import icephase_lmp
    from icephase_lmp.api import pipeline_for
    from icephase_lmp.model_file import SHIPPED_MODEL_NAMES, shipped_model_named

    monkeypatch.chdir(tmp_path)
    for file_name in SHIPPED_MODEL_NAMES:
        for name in (file_name, file_name.removesuffix(".pth")):
            assert pipeline_for(name).model.path.resolve() == shipped_model_named(name).resolve()
    atoms, oxygens = wet_ice
    labels = icephase_lmp.classify(atoms, model="icephase-12phase")
    assert len(labels.codes) == len(oxygens) and (labels.codes == 1).mean() > 0.9
