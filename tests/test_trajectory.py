"""Trajectory reading (LAMMPS dumps, extxyz, GROMACS via MDAnalysis) and label writing.

The LAMMPS dumps are written by hand here, with coordinates whose expected Cartesian values are
worked out on paper, so the reader is checked against numbers it did not produce.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read as ase_read
from ase.io import write as ase_write

from conftest import GCICENET
from icephase_lmp.errors import TrajectoryError
from icephase_lmp.trajectory import (
    Frame,
    Selection,
    count_frames,
    open_label_writer,
    parse_frames,
    read_frames,
)

CODE_NAMES = {-1: "not analysed", 0: "liquid", 1: "Ih", 2: "Ic"}


def dump_frame(timestep: int, columns: str, rows: list[str], box: str = "pp pp pp",
               bounds: tuple[str, str, str] = ("0 10", "0 10", "0 10"), extra: str = "") -> str:
    """One LAMMPS dump frame as text (``extra`` lets a test add sections such as ITEM: TIME)."""
    return (
        f"ITEM: TIMESTEP\n{timestep}\n{extra}ITEM: NUMBER OF ATOMS\n{len(rows)}\n"
        f"ITEM: BOX BOUNDS {box}\n" + "\n".join(bounds) + f"\nITEM: ATOMS {columns}\n" + "\n".join(rows) + "\n"
    )


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def water_dump(tmp_path: Path) -> Path:
    """Five frames of two molecules' worth of atoms (types 1 = O, 2 = H); frame k is shifted by k in x."""
    frames = []
    for k in range(5):
        rows = [f"1 1 {1 + k} 1 1", f"2 2 {2 + k} 1 1", f"3 1 {3 + k} 2 2", f"4 2 {4 + k} 2 2"]
        frames.append(dump_frame(100 * k, "id type x y z", rows))
    return write_text(tmp_path / "water.lammpstrj", "".join(frames))


# ------------------------------------------------------------------------------------------ parsing
def test_parse_frames_forms():
    assert parse_frames(None) == slice(None)
    assert parse_frames("") == slice(None)
    assert parse_frames("1:3") == slice(1, 3)
    assert parse_frames("::5") == slice(None, None, 5)
    assert parse_frames("5") == slice(5, 6)
    assert list(range(10))[parse_frames("-1")] == [9]


@pytest.mark.parametrize("text", ["a:b", "1:2:3:4", "::0", "1.5", ":-1:-1"])
def test_parse_frames_rejects_bad_text(text):
    with pytest.raises(TrajectoryError, match="START:STOP|step"):
        parse_frames(text)


def test_selection_parse_forms():
    assert Selection.parse(None).is_auto and Selection.parse("").is_auto
    assert Selection.parse("element O") == Selection(element="O")
    assert Selection.parse("name OW") == Selection(name="OW")
    assert Selection.parse("type 1") == Selection(types=(1,))
    assert Selection.parse("type 1 3") == Selection(types=(1, 3))


@pytest.mark.parametrize("text", ["oxygen", "type O", "element", "name OW HW"])
def test_selection_parse_rejects_bad_text_and_lists_accepted_forms(text):
    with pytest.raises(TrajectoryError) as err:
        Selection.parse(text)
    message = str(err.value)
    assert repr(text) in message
    for form in ("element O", "name OW", "type 1"):
        assert form in message


# ------------------------------------------------------------------------------------- LAMMPS dumps
def test_orthogonal_dump_select_by_type(water_dump):
    frame = next(read_frames(water_dump, select=Selection(types=(1,))))
    np.testing.assert_array_equal(frame.positions, [[1, 1, 1], [3, 2, 2]])
    np.testing.assert_array_equal(frame.cell, np.diag([10.0, 10.0, 10.0]))
    np.testing.assert_array_equal(frame.origin, [0, 0, 0])
    assert frame.pbc == (True, True, True)
    assert frame.index == 0 and frame.timestep == 0
    np.testing.assert_array_equal(frame.atom_ids, [1, 3])
    assert frame.positions.dtype == np.float64 and frame.atom_ids.dtype == np.int64


def test_dump_with_several_types_and_no_element_needs_a_type_selection(water_dump):
    with pytest.raises(TrajectoryError, match=r"several atom types.*--select 'type N'"):
        next(read_frames(water_dump))


def test_dump_with_one_type_is_selected_automatically(tmp_path):
    path = write_text(tmp_path / "o.dump", dump_frame(0, "id type x y z", ["1 3 1 2 3", "2 3 4 5 6"]))
    np.testing.assert_array_equal(next(read_frames(path)).positions, [[1, 2, 3], [4, 5, 6]])


def test_dump_element_column_auto_and_explicit(tmp_path):
    rows = ["1 1 O 1 1 1", "2 2 H 2 1 1", "3 2 H 3 1 1", "4 1 O 4 1 1"]
    path = write_text(tmp_path / "dump.water", dump_frame(0, "id type element x y z", rows))
    assert next(read_frames(path)).atom_ids.tolist() == [1, 4]  # auto: element O
    assert next(read_frames(path, select=Selection.parse("element H"))).atom_ids.tolist() == [2, 3]
    assert next(read_frames(path, select=Selection.parse("name O"))).atom_ids.tolist() == [1, 4]


def test_empty_selection_says_what_the_file_has(water_dump):
    with pytest.raises(TrajectoryError) as err:
        next(read_frames(water_dump, select=Selection.parse("type 5")))
    message = str(err.value)
    assert "matched no atom" in message and "type 5" in message
    assert "types: 1, 2" in message


def test_selection_by_element_without_element_column_is_explained(water_dump):
    with pytest.raises(TrajectoryError, match="'element' column"):
        next(read_frames(water_dump, select=Selection.parse("element O")))


def test_unordered_ids_are_sorted(tmp_path):
    rows = ["3 1 3.0 0 0", "1 1 1.0 0 0", "2 1 2.0 0 0"]  # as several MPI ranks write them
    frame = next(read_frames(write_text(tmp_path / "u.lammpstrj", dump_frame(7, "id type x y z", rows))))
    assert frame.atom_ids.tolist() == [1, 2, 3]
    assert frame.positions[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert frame.timestep == 7


def test_triclinic_scaled_coordinates(tmp_path):
    # Box: xlo, ylo, zlo = 1, -2, 0.5; lx, ly, lz = 10, 9, 8; xy, xz, yz = 2, -1, 1.5.
    # Dump bounds by the LAMMPS rules: xlo_bound = 1 + min(0, 2, -1, 1) = 0, xhi_bound = 11 + max(...) = 13,
    # ylo_bound = -2 + min(0, 1.5) = -2, yhi_bound = 7 + 1.5 = 8.5, z unchanged.
    bounds = ("0 13 2", "-2 8.5 -1", "0.5 8.5 1.5")
    rows = ["1 1 0 0 0", "2 1 0.5 0 0", "3 1 0 0.5 0", "4 1 0 0 1", "5 1 0.5 0.5 0.5"]
    path = write_text(tmp_path / "tri.lammpstrj", dump_frame(0, "id type xs ys zs", rows, "xy xz yz pp pp ff", bounds))
    frame = next(read_frames(path))
    np.testing.assert_allclose(frame.cell, [[10, 0, 0], [2, 9, 0], [-1, 1.5, 8]], atol=1e-12)
    np.testing.assert_allclose(frame.origin, [1, -2, 0.5], atol=1e-12)
    expected = [
        [1, -2, 0.5],  # the origin
        [6, -2, 0.5],  # origin + a / 2
        [2, 2.5, 0.5],  # origin + b / 2 = (1 + 1, -2 + 4.5, 0.5)
        [0, -0.5, 8.5],  # origin + c = (1 - 1, -2 + 1.5, 0.5 + 8): z is not periodic (ff), so not wrapped
        [6.5, 3.25, 4.5],  # origin + (a + b + c) / 2
    ]
    np.testing.assert_allclose(frame.positions, expected, atol=1e-12)
    assert frame.pbc == (True, True, False)


def test_wrapped_positions_are_preferred_and_other_sets_work(tmp_path):
    both = dump_frame(0, "id type xu yu zu x y z", ["1 1 11 12 13 1 2 3"])
    assert next(read_frames(write_text(tmp_path / "a.dump", both))).positions.tolist() == [[1, 2, 3]]
    # unwrapped columns come back wrapped into the periodic box (11 - 10, ...; 6 - 4, 1, -3 + 6)
    unwrapped = dump_frame(0, "id type xu yu zu", ["1 1 11 12 13"])
    assert next(read_frames(write_text(tmp_path / "b.dump", unwrapped))).positions.tolist() == [[1, 2, 3]]
    scaled_unwrapped = dump_frame(0, "id type xsu ysu zsu", ["1 1 1.5 0.5 -0.5"], bounds=("0 4", "0 2", "0 6"))
    assert next(read_frames(write_text(tmp_path / "c.dump", scaled_unwrapped))).positions.tolist() == [[2, 1, 3]]


def test_missing_position_columns(tmp_path):
    path = write_text(tmp_path / "v.lammpstrj", dump_frame(0, "id type vx vy vz", ["1 1 0 0 0"]))
    with pytest.raises(TrajectoryError, match=r"no position columns.*x y z"):
        next(read_frames(path))


def test_truncated_last_frame_is_named(tmp_path):
    good = dump_frame(0, "id type x y z", ["1 1 0 0 0", "2 1 1 1 1"])
    cut = dump_frame(10, "id type x y z", ["1 1 0 0 0", "2 1 1 1 1"]).rsplit("\n", 2)[0] + "\n"
    path = write_text(tmp_path / "cut.lammpstrj", good + cut)
    with pytest.raises(TrajectoryError) as err:
        list(read_frames(path))
    assert "frame 1" in str(err.value) and "truncated" in str(err.value) and "--frames :1" in str(err.value)
    assert [f.index for f in read_frames(path, frames=parse_frames(":1"))] == [0]


def test_frames_slicing_reads_the_right_frames(water_dump):
    o = Selection(types=(1,))
    picked = list(read_frames(water_dump, select=o, frames=parse_frames("1:3")))
    assert [f.index for f in picked] == [1, 2]
    assert [f.timestep for f in picked] == [100, 200]
    assert [f.positions[0, 0] for f in picked] == [2.0, 3.0]  # frame k is shifted by k
    assert [f.index for f in read_frames(water_dump, select=o, frames=parse_frames("::2"))] == [0, 2, 4]
    assert [f.timestep for f in read_frames(water_dump, select=o, frames=parse_frames("-1"))] == [400]
    assert count_frames(water_dump) == 5


@pytest.mark.parametrize("chunk", [5, 13, 14, 15, 64])
def test_count_frames_with_markers_split_between_chunks(water_dump, monkeypatch, chunk):
    import icephase_lmp.lammps_dump_reader as lammps_dump_reader

    monkeypatch.setattr(lammps_dump_reader, "_COUNT_CHUNK", chunk)  # 'ITEM: TIMESTEP' is 14 bytes
    assert count_frames(water_dump) == 5


def test_gzipped_dump_and_extra_sections(tmp_path):
    # dump_modify time yes / units yes add sections the reader must step over
    text = dump_frame(0, "id type x y z", ["1 1 1 2 3"], extra="ITEM: UNITS\nreal\nITEM: TIME\n0.5\n") * 3
    path = tmp_path / "t.lammpstrj.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    frames = list(read_frames(path))
    assert len(frames) == 3 == count_frames(path)
    assert frames[2].positions.tolist() == [[1, 2, 3]]


def test_not_a_dump_is_reported(tmp_path):
    path = write_text(tmp_path / "x.lammpstrj", "hello\nworld\n")
    with pytest.raises(TrajectoryError, match="ITEM: TIMESTEP"):
        next(read_frames(path))


# ------------------------------------------------------------------------------------------- extxyz
def test_extxyz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    cell = np.array([[8.0, 0, 0], [1.0, 7.0, 0], [0, 0, 9.0]])
    images = []
    for step in range(3):
        atoms = Atoms("OH2OH2", positions=rng.uniform(0, 7, (6, 3)), cell=cell, pbc=True)
        atoms.info["timestep"] = 10 * step
        images.append(atoms)
    path = tmp_path / "w.extxyz"
    ase_write(path, images)
    assert count_frames(path) == 3
    frames = list(read_frames(path, frames=slice(1, None)))
    assert [f.index for f in frames] == [1, 2]
    assert [f.timestep for f in frames] == [10, 20]
    np.testing.assert_allclose(frames[0].positions, images[1].positions[[0, 3]])
    np.testing.assert_allclose(frames[1].cell, cell)
    assert frames[0].pbc == (True, True, True)
    assert frames[0].atom_ids.tolist() == [0, 3]


# ----------------------------------------------------------------------------------- GROMACS (GCIceNet)
gcicenet = pytest.mark.skipif(not (GCICENET / "md_1h.tpr").is_file(), reason="GCIceNet data not present")


@gcicenet
def test_gcicenet_xtc_with_tpr():
    xtc, tpr = GCICENET / "md_1h_10frame.xtc", GCICENET / "md_1h.tpr"
    frame = next(read_frames(xtc, tpr))
    assert frame.positions.shape == (1024, 3)  # the README's molecule count
    np.testing.assert_allclose(np.diag(frame.cell), [31.41, 29.49, 36.32], atol=0.01)
    assert frame.pbc == (True, True, True) and frame.index == 0
    # the selected atoms are inside the box (Angstrom, not nm)
    assert frame.positions.max() < 40 and frame.positions.max() > 25
    assert count_frames(xtc, tpr) == 11
    by_name = next(read_frames(xtc, tpr, Selection.parse("name OW")))
    np.testing.assert_array_equal(by_name.positions, frame.positions)
    np.testing.assert_array_equal(frame.atom_ids[:3], [0, 4, 8])  # OW HW1 HW2 MW per molecule
    last = list(read_frames(xtc, tpr, frames=parse_frames("-1")))
    assert [f.index for f in last] == [10]


@gcicenet
def test_gcicenet_xtc_without_top_asks_for_it():
    with pytest.raises(TrajectoryError, match="--top"):
        read_frames(GCICENET / "md_1h_10frame.xtc")
    with pytest.raises(TrajectoryError, match="--top"):
        count_frames(GCICENET / "md_1h_10frame.xtc")


# ------------------------------------------------------------------------------------------- errors
def test_missing_file_is_named(tmp_path):
    with pytest.raises(TrajectoryError, match="nowhere.lammpstrj"):
        read_frames(tmp_path / "nowhere.lammpstrj")


def test_unknown_extension_lists_supported(tmp_path):
    path = write_text(tmp_path / "traj.foo", "1\n\nO 0 0 0\n")
    with pytest.raises(TrajectoryError) as err:
        read_frames(path)
    for suffix in (".lammpstrj", ".extxyz", ".xtc", "--top"):
        assert suffix in str(err.value)


# ------------------------------------------------------------------------------------------ writers
def make_frame(cell: np.ndarray | None = None, origin=(0.0, 0.0, 0.0), timestep: int | None = 42) -> Frame:
    positions = np.array([[1.0, 2.0, 3.0], [4.5, 5.25, 6.125], [7.0, 0.5, 2.0]])
    return Frame(
        positions=positions,
        cell=cell,
        origin=np.array(origin, dtype=float),
        pbc=(True, True, True) if cell is not None else (False, False, False),
        index=3,
        timestep=timestep,
        atom_ids=np.array([10, 20, 30]),
    )


CODES = np.array([1, 0, -1])
DISTANCES = np.array([0.1234567, 2.0, 3.5])
NAMES = ["Ih", "liquid", "not analysed"]


def test_csv_writer(tmp_path):
    out = tmp_path / "labels.csv"
    with open_label_writer(out, CODE_NAMES) as writer:
        writer.write(make_frame(), CODES, NAMES, DISTANCES)
        one = make_frame()
        one.positions, one.index = one.positions[:1], 4
        writer.write(one, CODES[:1], NAMES[:1], DISTANCES[:1])
        with pytest.raises(TrajectoryError, match="3 positions but 1 codes"):
            writer.write(make_frame(), CODES[:1], NAMES[:1], DISTANCES[:1])
    assert out.read_text().splitlines()[0] == "frame,index,code,phase,distance,cluster"
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert [r["phase"] for r in rows[:3]] == ["Ih", "liquid", "not analysed"]
    assert [r["code"] for r in rows[:3]] == ["1", "0", "-1"]
    assert [r["index"] for r in rows] == ["0", "1", "2", "0"]
    assert [r["frame"] for r in rows] == ["3", "3", "3", "4"]
    assert rows[0]["distance"] == "0.123457" and rows[2]["distance"] == "3.500000"


def dump_codes(path: Path) -> list[list[int]]:
    """The 'code' column of every frame, read from the text without the package's reader."""
    frames, columns, lines = [], None, path.read_text().splitlines()
    for k, line in enumerate(lines):
        if line.startswith("ITEM: NUMBER OF ATOMS"):
            n = int(lines[k + 1])
        if line.startswith("ITEM: ATOMS"):
            columns = line.split()[2:]
            rows = lines[k + 1:k + 1 + n]
            frames.append([int(r.split()[columns.index("code")]) for r in rows])
    return frames


def test_dump_writer_triclinic_round_trip(tmp_path):
    cell = np.array([[10.0, 0, 0], [2.0, 9.0, 0], [-1.0, 1.5, 8.0]])
    frame = make_frame(cell, origin=(1.0, -2.0, 0.5))
    out = tmp_path / "labels.lammpstrj"
    with open_label_writer(out, CODE_NAMES) as writer:
        writer.write(frame, CODES, NAMES, DISTANCES)
        writer.write(frame, CODES[::-1], NAMES[::-1], DISTANCES, positions=frame.positions + 0.5)
    assert "ITEM: BOX BOUNDS xy xz yz pp pp pp" in out.read_text()
    back = list(read_frames(out))
    assert len(back) == 2
    # read back wrapped into the cell: the same sites up to whole box vectors
    for got, written in ((back[0].positions, frame.positions), (back[1].positions, frame.positions + 0.5)):
        images = (got - written) @ np.linalg.inv(cell)
        np.testing.assert_allclose(images, np.round(images), atol=1e-6)
        inside = (got - back[0].origin) @ np.linalg.inv(cell)
        assert np.all((inside > -1e-9) & (inside < 1 + 1e-9))
    np.testing.assert_allclose(back[0].cell, cell, atol=1e-6)
    np.testing.assert_allclose(back[0].origin, [1, -2, 0.5], atol=1e-6)
    assert back[0].atom_ids.tolist() == [10, 20, 30] and back[0].timestep == 42
    assert dump_codes(out) == [[1, 0, -1], [-1, 0, 1]]


def test_dump_writer_without_box_and_with_a_rotated_cell(tmp_path):
    out = tmp_path / "nobox.dump"
    with open_label_writer(out, CODE_NAMES) as writer:
        writer.write(make_frame(None, timestep=None), CODES, NAMES, DISTANCES)
    back = next(read_frames(out))
    assert "ITEM: BOX BOUNDS ff ff ff" in out.read_text() and back.pbc == (False, False, False)
    assert back.timestep == 3  # frame.index stands in for a missing timestep
    np.testing.assert_allclose(back.positions, make_frame().positions, atol=1e-6)

    # A cell with a not along x (as extxyz files may have) must be rotated into LAMMPS form: the
    # lengths, angles and interatomic distances survive, the orientation does not.
    angle = np.radians(30)
    rot = np.array([[np.cos(angle), np.sin(angle), 0], [-np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    cell = np.diag([10.0, 11.0, 12.0]) @ rot
    frame = make_frame(cell)
    frame.positions = frame.positions @ rot
    out = tmp_path / "rotated.dump"
    with open_label_writer(out, CODE_NAMES) as writer:
        writer.write(frame, CODES, NAMES, DISTANCES)
    back = next(read_frames(out))
    np.testing.assert_allclose(back.cell, np.diag([10.0, 11.0, 12.0]), atol=1e-6)
    np.testing.assert_allclose(back.positions, make_frame().positions, atol=1e-6)


def test_extxyz_writer(tmp_path):
    cell = np.diag([10.0, 11.0, 12.0])
    out = tmp_path / "labels.extxyz"
    with open_label_writer(out, CODE_NAMES) as writer:
        writer.write(make_frame(cell), CODES, NAMES, DISTANCES)
        writer.write(make_frame(cell), CODES, NAMES, DISTANCES, positions=np.zeros((3, 3)))
    images = ase_read(out, index=":")
    assert len(images) == 2
    assert images[0].arrays["code"].tolist() == [1, 0, -1]
    np.testing.assert_allclose(images[0].arrays["distance"], DISTANCES)
    assert list(images[0].arrays["phase"]) == ["Ih", "liquid", "not_analysed"]
    assert images[0].get_chemical_symbols() == ["O"] * 3
    np.testing.assert_allclose(images[0].cell.array, cell)
    np.testing.assert_allclose(images[1].positions, 0.0)


def test_writer_rejects_unknown_extension_and_missing_folder(tmp_path):
    with pytest.raises(TrajectoryError, match=r"\.csv.*\.lammpstrj.*\.extxyz"):
        open_label_writer(tmp_path / "labels.txt", CODE_NAMES)
    with pytest.raises(TrajectoryError, match="folder"):
        open_label_writer(tmp_path / "no" / "such" / "labels.csv", CODE_NAMES)


def test_dump_keeps_extra_columns_of_selected_atoms(tmp_path):
    from icephase_lmp.trajectory import Selection, read_frames

    path = tmp_path / "c.lammpstrj"
    path.write_text(
        "ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS pp pp pp\n0 10\n0 10\n0 10\n"
        "ITEM: ATOMS id type x y z c_ice[1] c_ice[2]\n"
        "3 1 1 1 1 7 0.5\n1 1 2 2 2 1 0.25\n2 2 3 3 3 -1 0\n"
    )
    frame = next(read_frames(path, select=Selection(types=(1,))))
    assert frame.atom_ids.tolist() == [1, 3]
    assert frame.columns["c_ice[1]"].astype(int).tolist() == [1, 7]
    assert frame.columns["c_ice[2]"].astype(float).tolist() == [0.25, 0.5]


def test_type_selection_without_type_column_asks_for_it(tmp_path):
    path = write_text(tmp_path / "o.lammpstrj", dump_frame(0, "id element x y z", ["1 O 1 2 3"]))
    with pytest.raises(TrajectoryError, match=r"needs a 'type' column"):
        next(read_frames(path, select=Selection.parse("type 1")))
