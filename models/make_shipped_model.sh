#!/usr/bin/env bash
# The exact commands that produced models/icephase-7phase.pth (run from the repository root, in .venv).
# Training takes ~30-50 min on one CPU thread; the MD snapshots for calibration ~30 min (one core).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .venv/bin/activate
export OMP_NUM_THREADS=1
model=models/icephase-7phase.pth

# 1. denoiser: seven GenIce2 references, O only (config and loss curve copied to models/icephase-7phase/);
#    skipped while the shipped file exists (delete it to train from scratch)
[ -f runs/shipped/checkpoint.pt ] || [ -f "$model" ] || icephase train runs/shipped --steps 12000 --lr 1.5e-3 --lr-final-fraction 0.05 \
    --seed 0 --threads 1 --num-features 32

# 2. one file: denoiser + classifier fitted on the references (ideal, and as this denoiser leaves them with
#    noise up to sigma_max: icephase_lmp/denoised_references.py) + metadata. The source is the training run;
#    where its checkpoint is not on this machine, the shipped file itself (same denoiser weights, the
#    classifier fitted afresh: this is how the current file was made, 2026-11-30).
src=runs/shipped
[ -f runs/shipped/checkpoint.pt ] || { cp "$model" runs/shipped-denoiser.pth; src=runs/shipped-denoiser.pth; }
icephase export "$src" --out "$model" --iterations "${ITERATIONS:-8}" --r-cut "${R_CUT:-5}" \
    --phase-vote-radius 0    # the shipped file was made and measured before the phase vote existed

# 3. thresholds from our own TIP4P/Ice MD (models/calibrate_7phase.sh says which)
bash models/calibrate_7phase.sh "$model" models/icephase-7phase
[ -f runs/shipped/config.json ] && cp runs/shipped/config.json runs/shipped/loss.csv runs/shipped/loss.png models/icephase-7phase/
icephase inspect "$model"
