#!/usr/bin/env bash
# The exact commands that made the eleven-phase model measured in docs/validation.md (issue 14): the paper's
# seven phases plus ice V, ice XII and the sII and sH clathrate frameworks, trained and exported exactly as
# the shipped seven-phase model (models/make_shipped_model.sh) but for the reference list. NOT shipped (its
# ice/liquid calibration overlaps and it calls 5% of ice XII "V": validation.md), so it is written under
# runs/, not models/. The thresholds are calibrated with --force for that reason.
# Run from the repository root, in .venv. Training: ~1.5-2 h on one CPU thread; MD for calibration ~1 h.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .venv/bin/activate
export OMP_NUM_THREADS=1
model=runs/extended11/icephase-11phase.pth
run=runs/extended11
refs=()
# (written as LABEL=LATTICE, as in the run that made the file; `--reference V` etc. now mean the same)
for r in Ih Ic II III VI VII sI V=5 XII=12 sII=CS2 sH=HS3; do refs+=(--reference "$r"); done

# 1. denoiser: eleven GenIce2 references, O only
#    (an interrupted run continues from its checkpoint)
resume=(); [ -f "$run/checkpoint.pt" ] && resume=(--resume)
[ -f "$run/denoiser.pt" ] || icephase train "$run" --steps 12000 --lr 1.5e-3 --lr-final-fraction 0.05 \
    --seed 0 --threads 1 --num-features 32 "${refs[@]}" "${resume[@]}"

# 2. one file: denoiser + classifier fitted on the eleven references (ideal, and as this denoiser leaves
#    them with noise) + metadata
icephase export "$run" --out "$model" --iterations 8 --r-cut 5

# 3. thresholds from our own TIP4P/Ice MD of all eleven phases at 250 K (make_md_snapshots.py: Ih, Ic, sI,
#    sII, sH at 1 atm; II, III at 0.3 GPa; V, XII at 0.5 GPa; VI at 1 GPa; VII at 3 GPa) plus the eleven
#    references with i.i.d. noise of 0.15 A, against liquid at 300 K. Even frames only (--frames 0:21:2):
#    the odd frames stay unseen for benchmarks/md_phases.py.
for name in ice_ih_250K ice_vii_250K ice_v_250K sH_250K; do
    [ -f "runs/md/$name.lammpstrj" ] || python scripts/make_md_snapshots.py --out runs/md
done
ice=(--noisy-references 0.15)
for name in ice_ih_250K ice_ic_250K sI_250K ice_ii_250K ice_iii_250K ice_vi_250K ice_vii_250K \
            ice_v_250K ice_xii_250K sII_250K sH_250K; do
    ice+=(--ice "runs/md/$name.lammpstrj")
done
figs=runs/extended11/calibration; mkdir -p "$figs"
for metric in euclidean cosine; do
    icephase calibrate --model "$model" "${ice[@]}" --liquid runs/md/liquid_300K.lammpstrj --frames 0:21:2 \
        --metric "$metric" --force --plot "$figs/threshold_denoised_$metric.png" --write-model "$model"
    # the raw (SOAP-only) thresholds overlap by nature and only serve --no-denoise / iterations 0
    icephase calibrate --model "$model" "${ice[@]}" --liquid runs/md/liquid_300K.lammpstrj --frames 0:21:2 \
        --metric "$metric" --no-denoise --force --plot "$figs/threshold_raw_$metric.png" \
        --write-model "$model"
done
icephase inspect "$model"
