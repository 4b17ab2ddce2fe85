"""model.pth: export / inspect / load round trip, and bad files rejected with a clear message."""

import json
import zipfile

import numpy as np
import pytest
import torch

from icephase_lmp.cli import main
from icephase_lmp.denoiser_network import DenoiserConfig, build_denoiser, script_denoiser
from icephase_lmp.errors import ModelFileError
from icephase_lmp.model_file import build_metadata, load_model, read_metadata, save_model
from icephase_lmp.phases import OTHER_CRYSTAL


@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory, classifier):
    torch.manual_seed(0)
    config = DenoiserConfig(num_layers=2, num_features=8)
    net = build_denoiser(config)
    classifier.thresholds = {"denoised/euclidean": 11.0, "raw/cosine": 0.3}
    meta = build_metadata(config, classifier, iterations=5, tolerance=0.01, training={"steps_done": 0})
    path = tmp_path_factory.mktemp("model") / "model.pth"
    save_model(path, script_denoiser(net), classifier, meta)
    return path, net


def test_round_trip_keeps_denoiser_classifier_and_metadata(small_model_file, classifier):
    path, net = small_model_file
    m = load_model(path)
    assert m.iterations == 5 and m.tolerance == 0.01 and m.r_max == 4.5
    # the ghost cutoff covers both the denoiser's receptive field and SOAP's reach
    assert m.metadata["ghost_cutoff"] >= max(2 * 4.5, classifier.soap.reach)
    codes = {p["code"]: p["name"] for p in m.metadata["phases"]}
    assert codes[-1] == "not analysed" and codes[0] == "liquid" and codes[7] == "sI"
    assert np.array_equal(m.classifier.ref_features, classifier.ref_features)
    assert m.classifier.threshold("euclidean", denoised=True) == 11.0
    pos = torch.randn(20, 3, dtype=torch.float32) * 3
    ei = torch.tensor([[0, 1, 2], [1, 0, 3]])
    sh = torch.zeros(3, 3)
    with torch.no_grad():
        assert torch.equal(m.denoiser(pos, ei, sh), net(pos, ei, sh))


def test_the_denoiser_is_stored_frozen_with_its_weights_beside_it(small_model_file, tmp_path):
    """A frozen graph (fast to load) computes what the network computes; the weights, kept in an npz,
    survive a re-save of the loaded model and rebuild the trainable network exactly."""
    path, net = small_model_file
    m = load_model(path)
    assert not list(m.denoiser.parameters())  # frozen: the weights are constants of the graph
    state = net.state_dict()
    assert set(state) <= set(m.weights) and all(np.array_equal(m.weights[k], state[k].numpy()) for k in state)
    again = tmp_path / "again.pth"
    save_model(again, m.denoiser, m.classifier, m.metadata, m.weights)
    m2 = load_model(again)
    rebuilt = build_denoiser(DenoiserConfig(num_layers=2, num_features=8))
    rebuilt.load_state_dict({k: torch.from_numpy(v) for k, v in m2.weights.items()}, strict=False)
    pos = torch.randn(30, 3, dtype=torch.float32) * 3
    ei = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    sh = torch.zeros(4, 3)
    with torch.no_grad():
        expected = net(pos, ei, sh)
        assert torch.equal(m2.denoiser(pos, ei, sh), expected)
        assert torch.equal(rebuilt(pos, ei, sh), expected)


def test_configure_changes_the_boundary_step_and_keeps_the_rest(small_model_file, tmp_path, capsys):
    """`icephase configure OLD.pth --boundary rounds=4 --boundary support_radius=5 --out NEW.pth`: the new file has
    those settings (classifier header and metadata, which the LAMMPS compute reads) and the same denoiser
    (bit for bit), references and thresholds; a bad setting is refused in one line and writes nothing."""
    path, _ = small_model_file
    new = tmp_path / "new.pth"
    assert main(["configure", str(path), "--out", str(new), "--boundary", "rounds=4",
                 "--boundary", "support_radius=5"]) == 0
    a, b = load_model(path), load_model(new)
    assert (b.classifier.boundary.rounds, b.classifier.boundary.support_radius) == (4, 5.0)
    assert b.metadata["boundary"] == b.classifier.boundary.to_dict()
    assert ({k: v for k, v in b.metadata.items() if k != "boundary"}
            == {k: v for k, v in a.metadata.items() if k != "boundary"})
    assert np.array_equal(a.classifier.ref_features, b.classifier.ref_features)
    assert a.classifier.thresholds == b.classifier.thresholds
    assert all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    pos = torch.randn(20, 3, dtype=torch.float32) * 3
    ei, sh = torch.tensor([[0, 1, 2], [1, 0, 3]]), torch.zeros(3, 3)
    with torch.no_grad():
        assert torch.equal(a.denoiser(pos, ei, sh), b.denoiser(pos, ei, sh))
    assert main(["inspect", str(new)]) == 0
    out = capsys.readouterr().out
    assert "stays ice only where >= 50% of the O within 5 A are ice" in out
    assert ("that do not reach across the box get 4 more rounds, checked with the share of ice a convex surface "
            "has") in out
    flat = tmp_path / "flat.pth"
    assert main(["configure", str(new), "--out", str(flat), "--boundary", "convex_support=false",
                 "--boundary", "hold_spanning=off"]) == 0
    assert load_model(flat).classifier.boundary.convex_support is False
    assert load_model(flat).classifier.boundary.hold_spanning is False
    assert main(["inspect", str(flat)]) == 0
    out = capsys.readouterr().out
    assert "25% of all get 4 more rounds\n" in out and "convex surface" not in out
    for bad, message in (("rnds=4", "no such setting"), ("rounds=x", "a whole number"),
                         ("convex_support=maybe", "give true or false"),
                         ("min_support=2", "out of range"), ("support_radius=30", "exceeds the SOAP reach")):
        assert main(["configure", str(path), "--out", str(tmp_path / "bad.pth"), "--boundary", bad]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad.pth").exists()


def test_configure_adds_a_site_table_to_an_older_file(small_model_file, tmp_path, capsys):
    """A file without the censuses' tables (as every file made before the site census): `icephase configure
    --site-table` writes both, fitted from the built-in references of its phases, the same as a fresh fit's, and
    keeps the rest; `inspect` prints them; configure without a change is refused."""
    from dataclasses import replace

    from icephase_lmp.ring_census import RingTable
    from icephase_lmp.site_census import SiteTable

    path, _ = small_model_file
    fresh = load_model(path).classifier.sites
    fresh_rings = load_model(path).classifier.rings
    old = load_model(path)
    bare = tmp_path / "bare.pth"
    save_model(bare, old.denoiser, replace(old.classifier, sites=SiteTable.empty(30), rings=RingTable.empty()),
               old.metadata)
    assert len(load_model(bare).classifier.sites) == 0 and len(load_model(bare).classifier.rings) == 0
    assert main(["inspect", str(bare)]) == 0
    printed = capsys.readouterr().out
    assert "site census      none" in printed and "ring census      none" in printed
    new = tmp_path / "sites.pth"
    assert main(["configure", str(bare), "--out", str(new), "--site-table"]) == 0
    assert "12 sites, site census of 4 phases, ring census of 1 (3 ring signatures)" in capsys.readouterr().out
    rings = load_model(new).classifier.rings
    assert np.array_equal(rings.codes, fresh_rings.codes) and np.array_equal(rings.signatures,
                                                                              fresh_rings.signatures)
    sites = load_model(new).classifier.sites
    assert np.array_equal(sites.codes, fresh.codes) and np.allclose(sites.shares, fresh.shares)
    assert np.allclose(sites.features, fresh.features, atol=1e-6)
    assert np.array_equal(load_model(new).classifier.ref_features, old.classifier.ref_features)
    assert load_model(new).metadata == old.metadata
    assert main(["inspect", str(new)]) == 0
    printed = capsys.readouterr().out
    assert "site census      II 0.500:0.500; III 0.667:0.333; VI 0.800:0.200; sI 0.348:0.130:0.522" in printed
    assert "ring census      sI 3 (ring signatures" in printed
    assert main(["configure", str(bare), "--out", str(tmp_path / "none.pth")]) == 2
    assert "give --boundary KEY=VALUE or --site-table" in capsys.readouterr().err


def test_inspect_prints_the_metadata(small_model_file, capsys):
    path, _ = small_model_file
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ghost cutoff" in out and "denoised/euclidean = 11" in out and "7 sI" in out
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 5


def test_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.pth")


def test_corrupt_model(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match="not an icephase model file"):
        read_metadata(bad)


def test_truncated_model(small_model_file, tmp_path):
    path, _ = small_model_file
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError):
        load_model(cut)


def test_foreign_torchscript_archive(tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 3)), str(foreign))
    with pytest.raises(ModelFileError, match="not an icephase model"):
        load_model(foreign)


def test_future_format_version_rejected(small_model_file, tmp_path):
    path, _ = small_model_file
    newer = tmp_path / "newer.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/extra/metadata.json"):
                meta = json.loads(data)
                meta["format_version"] = 99
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="version 99"):
        read_metadata(newer)


def test_cli_reports_bad_model_cleanly(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_lammps_bridge_classifies_local_atoms_of_an_open_cloud(small_model_file, classifier, references):
    """What the plugin calls on each rank: local atoms first, ghosts after, no box."""
    from icephase_lmp import lammps_bridge
    from icephase_lmp.references import supercell

    path, _ = small_model_file
    meta = json.loads(lammps_bridge.model_metadata_json(str(path)))
    assert meta["format"] == "icephase-model"
    atoms = supercell(references[5].atoms, 30.0)  # ice VII
    centre = atoms.cell.array.sum(axis=0) / 2
    order = np.argsort(np.linalg.norm(atoms.positions - centre, axis=1))
    cloud = atoms.positions[order]  # the 10 innermost atoms are the "local" ones, the rest their ghosts
    codes, dist, reduced = lammps_bridge.classify(str(path), cloud, 10, "euclidean", 11.0)
    assert codes.dtype == np.int32 and codes.shape == (10,) and dist.shape == (10,)
    assert reduced.shape == (10, json.loads(lammps_bridge.model_metadata_json(str(path)))["policy"]["reduced_features"])
    assert np.all(codes == 6) and np.all(dist < 1e-3)
    # one boundary round changes nothing in a crystal that is ice everywhere
    grown = lammps_bridge.grow(str(path), cloud, 10, np.full(len(cloud), 6))
    assert grown.dtype == np.int32 and np.all(grown == 6)
    # ice VII has eight first neighbours, no tetrahedron: liquid-labelled atoms next to it stay liquid
    codes = np.full(len(cloud), 6)
    codes[:10] = 0
    assert np.all(lammps_bridge.grow(str(path), cloud, 10, codes) == 0)
    with pytest.raises(ValueError, match="codes"):
        lammps_bridge.grow(str(path), cloud, 10, codes[:-1])
    # other crystal: the crystal's local atoms, labelled liquid, repeat their environment (ghosts' vectors
    # by forward communication: here their own); NaN vectors (none computed) never count
    _, _, every = lammps_bridge.classify(str(path), cloud, len(cloud), "euclidean", 11.0)
    liquid = np.zeros(10, dtype=np.int32)
    assert np.all(lammps_bridge.other_crystal(str(path), cloud, 10, liquid, every, "euclidean", 11.0) == OTHER_CRYSTAL)
    assert np.all(lammps_bridge.other_crystal(str(path), cloud, 10, np.full(10, 6), every, "euclidean", 11.0) == 6)
    unknown = np.full_like(every, np.nan)
    assert np.all(lammps_bridge.other_crystal(str(path), cloud, 10, liquid, unknown, "euclidean", 11.0) == 0)
    with pytest.raises(ValueError, match="n_local"):
        lammps_bridge.classify(str(path), cloud, len(cloud) + 1, "euclidean", 11.0)


def test_a_shipped_model_can_be_named_without_its_path(tmp_path, monkeypatch):
    from icephase_lmp.model_file import SHIPPED_MODEL, read_metadata

    monkeypatch.chdir(tmp_path)  # no such file here: the name must resolve to the package's copy
    for name in ("icephase-7phase", "icephase-7phase.pth"):
        assert read_metadata(name) == read_metadata(SHIPPED_MODEL)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_metadata("icephase-99phase")
