#!/usr/bin/env bash
# Install icephase into .venv/ at the repository root: torch first (pinned CPU wheel), then every other
# package under requirements/constraints.txt so nothing can pull in a different torch, then icephase itself
# (editable, with its compiled SOAP kernel) and, when a C++ toolchain is present, the LAMMPS plugin into build/.
# Idempotent: a second run only checks what is there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="${PYTHON:-python3}"

# OVITO's Python module renders offscreen through Vulkan, even on machines without a GPU.
if ! { ldconfig -p | grep -q libvulkan.so.1; } && command -v apt-get >/dev/null; then
    echo "[install] Debian packages for OVITO rendering: libvulkan1 mesa-vulkan-drivers"
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "[install] creating $venv"
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; return "${PIPESTATUS[0]}"; }
stamp="$venv/.icephase-installed"
# (re)install when the pins, the package metadata or a compiled kernel's source changed, or a kernel was never
# built (pip builds them in place, next to their sources)
kernels_changed=0
for kernel in _soap_kernel _denoiser_kernel; do
    if [ "python/icephase_lmp/$kernel.cpp" -nt "$stamp" ] || [ src/compute_icephase/icephase_message_sums.h -nt "$stamp" ] \
        || [ src/compute_icephase/icephase_radial_table.h -nt "$stamp" ] \
        || ! compgen -G "python/icephase_lmp/$kernel*.so" >/dev/null; then
        kernels_changed=1
    fi
done
if [ ! -f "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || [ setup.py -nt "$stamp" ] || [ "$kernels_changed" = 1 ]; then
    echo "[install] torch==2.13.0 (CPU wheel) first"
    quiet "${pip[@]}" "torch==2.13.0"
    echo "[install] the rest, constrained by requirements/constraints.txt"
    quiet "${pip[@]}" -c requirements/constraints.txt -e ".[dev]"
    touch "$stamp"
fi
if [ -f CMakeLists.txt ] && [ "${ICEPHASE_SKIP_PLUGIN:-0}" != 1 ]; then
    bash scripts/build_plugin.sh
fi
echo "[install] done: $venv"
