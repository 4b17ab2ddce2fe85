#!/usr/bin/env bash
# Step 3 of the seven-phase recipes (make_shipped_model.sh, make_fast_model.sh): store the thresholds of
# MODEL, calibrated on OUR OWN TIP4P/Ice MD (never on the GCIceNet test data), with the histograms in FIGS.
# Usage (from the repository root, in .venv): bash models/calibrate_7phase.sh MODEL FIGS
#
# Ice: all seven phases at 250 K, Ih, Ic, sI at 1 atm, II and III at 0.3 GPa, VI at 1 GPa, VII at 3 GPa;
# plus the seven references with i.i.d. Gaussian noise of 0.15 A (in our Ih at 250 K the first-shell O-O
# distance fluctuates by 0.115 A, what i.i.d. noise of 0.08 A gives; 0.15 A is a 2x margin). Liquid: 300 K.
set -euo pipefail
model=$1
figs=$2
[ -f runs/md/ice_vii_250K.lammpstrj ] || python scripts/make_md_snapshots.py --out runs/md
ice=(--noisy-references 0.15)
for name in ice_ih_250K ice_ic_250K sI_250K ice_ii_250K ice_iii_250K ice_vi_250K ice_vii_250K; do
    ice+=(--ice "runs/md/$name.lammpstrj")
done
mkdir -p "$figs"
for metric in euclidean cosine; do
    icephase calibrate --model "$model" "${ice[@]}" --liquid runs/md/liquid_300K.lammpstrj --metric "$metric" \
        --plot "$figs/threshold_denoised_$metric.png" --write-model "$model"
    # SOAP alone cannot separate ice from liquid (docs/validation.md): calibrate refuses to store an
    # overlapping threshold unless told to; the raw thresholds only serve --no-denoise / iterations 0
    icephase calibrate --model "$model" "${ice[@]}" --liquid runs/md/liquid_300K.lammpstrj --metric "$metric" \
        --no-denoise --force --plot "$figs/threshold_raw_$metric.png" --write-model "$model"
done
