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
icephase export "$src" --out "$model" --iterations "${ITERATIONS:-8}" --r-cut "${R_CUT:-5}"

# 3. thresholds from OUR OWN TIP4P/Ice MD (not the GCIceNet test data): all seven phases at 250 K, Ih, Ic, sI
#    at 1 atm, II and III at 0.3 GPa, VI at 1 GPa, VII at 3 GPa; plus the seven references with i.i.d.
#    Gaussian noise of 0.15 A (in our Ih at 250 K the first-shell O-O distance fluctuates by 0.115 A, what
#    i.i.d. noise of 0.08 A gives; 0.15 A is a 2x margin); liquid at 300 K.
[ -f runs/md/ice_vii_250K.lammpstrj ] || python scripts/make_md_snapshots.py --out runs/md
ice=(--noisy-references 0.15)
for name in ice_ih_250K ice_ic_250K sI_250K ice_ii_250K ice_iii_250K ice_vi_250K ice_vii_250K; do
    ice+=(--ice "runs/md/$name.lammpstrj")
done
for metric in euclidean cosine; do
    icephase calibrate --model "$model" "${ice[@]}" --liquid runs/md/liquid_300K.lammpstrj --metric "$metric" \
        --plot "models/icephase-7phase/threshold_denoised_$metric.png" --write-model "$model"
    # SOAP alone cannot separate ice from liquid (docs/validation.md): calibrate refuses to store an
    # overlapping threshold unless told to; the raw thresholds only serve --no-denoise / iterations 0
    icephase calibrate --model "$model" "${ice[@]}" --liquid runs/md/liquid_300K.lammpstrj --metric "$metric" \
        --no-denoise --force --plot "models/icephase-7phase/threshold_raw_$metric.png" --write-model "$model"
done
mkdir -p models/icephase-7phase
[ -f runs/shipped/config.json ] && cp runs/shipped/config.json runs/shipped/loss.csv runs/shipped/loss.png models/icephase-7phase/
icephase inspect "$model"
