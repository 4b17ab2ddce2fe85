"""IcePhase, the MDAnalysis analysis: per-frame labels equal to the Pipeline run by hand on each frame, and
identical labels from MDAnalysis's parallel backends."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import GCICENET

FRAMES = slice(0, 4)


@pytest.fixture(scope="module")
def universe():
    import MDAnalysis as mda

    return mda.Universe(str(GCICENET / "md_1h.tpr"), str(GCICENET / "md_1h_10frame.xtc"))


@pytest.fixture(scope="module")
def serial(universe):
    from icephase_lmp import IcePhase

    return IcePhase(universe.select_atoms("name OW")).run(start=FRAMES.start, stop=FRAMES.stop)


def test_serial_run_matches_the_pipeline_frame_by_frame(universe, serial, shipped_model):
    from icephase_lmp.pipeline import Pipeline

    pipeline = Pipeline(shipped_model)
    oxygens = universe.select_atoms("name OW")
    frames = range(*FRAMES.indices(len(universe.trajectory)))
    assert serial.results.codes.shape == (len(frames), len(oxygens))
    np.testing.assert_array_equal(serial.frames, list(frames))
    for row, index in enumerate(frames):
        ts = universe.trajectory[index]
        expected = pipeline.run(oxygens.positions.astype(np.float64), ts.triclinic_dimensions, (True, True, True))
        np.testing.assert_array_equal(serial.results.codes[row], expected.codes)
        np.testing.assert_allclose(serial.results.distances[row], expected.distances, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(serial.results.clusters[row], expected.clusters.ids)
        assert serial.results.largest_cluster[row] == expected.clusters.largest
        # columns: liquid, the seven phases by code, then other crystal (-2)
        counts = [np.count_nonzero(expected.codes == c) for c in (0, 1, 2, 3, 4, 5, 6, 7, -2)]
        np.testing.assert_allclose(serial.results.fractions[row], np.array(counts) / len(oxygens))
    assert serial.results.phases == ["liquid", "Ih", "Ic", "II", "III", "VI", "VII", "sI", "other crystal"]
    assert serial.results.code_names[-1] == "not analysed"
    assert (serial.results.fractions[:, 1] > 0.99).all()  # the GCIceNet ice Ih run is ice Ih


def test_start_stop_step_and_empty_group(universe):
    from icephase_lmp import IcePhase

    ice = IcePhase(universe.select_atoms("name OW"), denoise=False).run(start=2, stop=9, step=3)
    np.testing.assert_array_equal(ice.frames, [2, 5, 8])
    assert ice.results.codes.shape[0] == 3 and ice.results.largest_cluster.shape == (3,)
    with pytest.raises(ValueError, match="empty"):
        IcePhase(universe.select_atoms("name XX"))


@pytest.mark.slow
def test_multiprocessing_backend_gives_the_serial_labels(universe, serial):
    from icephase_lmp import IcePhase

    parallel = IcePhase(universe.select_atoms("name OW")).run(
        start=FRAMES.start, stop=FRAMES.stop, backend="multiprocessing", n_workers=2)
    np.testing.assert_array_equal(parallel.frames, serial.frames)
    for key in ("codes", "clusters", "largest_cluster"):
        np.testing.assert_array_equal(parallel.results[key], serial.results[key], err_msg=key)
    np.testing.assert_allclose(parallel.results.distances, serial.results.distances, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(parallel.results.fractions, serial.results.fractions)
    assert parallel.results.phases == serial.results.phases


@pytest.mark.slow
def test_dask_backend_gives_the_serial_labels(universe, serial):
    pytest.importorskip("dask", reason="dask is not installed (it is in the dev extra: scripts/install.sh installs it)")
    from icephase_lmp import IcePhase

    parallel = IcePhase(universe.select_atoms("name OW")).run(
        start=FRAMES.start, stop=FRAMES.stop, backend="dask", n_workers=2)
    np.testing.assert_array_equal(parallel.results.codes, serial.results.codes)
    np.testing.assert_array_equal(parallel.results.largest_cluster, serial.results.largest_cluster)


def test_a_serial_run_can_be_rerun_in_parallel(universe):
    """After a serial run the object holds a loaded TorchScript model; pickling it for workers must still work."""
    import pickle

    from icephase_lmp import IcePhase

    ice = IcePhase(universe.select_atoms("name OW"), denoise=False).run(stop=1)
    assert ice._pipeline is not None
    clone = pickle.loads(pickle.dumps(ice))
    assert clone._pipeline is None and clone._model is None
