#!/bin/sh
# How results/grid-v2-sincos is run (issue 13): the no-MTM ablation of grid v2 on 600 images with
# one change, the from-scratch classifier's position table initialised from the 2-D sin-cos table
# (still learned) instead of timm's trunc-normal 0.02 (configs/grid_fmnist_v2_sincos.json:
# finetune.model.posEmbedInit). One run at a time (the other core runs grid v2). Ordered so that
# the baseline's three seeds come first, then TokenAdapt and its identity arm, then the rest.
# From the repository root:
#   nohup setsid sh results/grid-v2-sincos/run_phases.sh >> results/grid-v2-sincos/ablate.log 2>&1 &
set -e
export SEITPP_BLAS_THREADS=1
run() { deno task ablate --grid configs/grid_fmnist_v2_sincos.json --out results/grid-v2-sincos --jobs 1 "$@"; }
run --cells='[{"budgets":["fm8-600"],"arms":["seit"]}]'
run --cells='[{"budgets":["fm8-600"],"arms":["ta","ita"]}]'
# SeiT with the sin-cos start on the storage sweep's larger budgets (added 12:20 UTC on
# 2026-12-05, seed 0 first, as a third job beside results/grid-v2's two)
run --seeds='[0]' --cells='[{"budgets":["fm8-2400","fm8-9600"],"arms":["seit"]}]'
run --cells='[{"budgets":["fm8-2400","fm8-9600"],"arms":["seit"]}]'
# The rest (ca, seitpp_nomtm, seed 2 of ita). On 2026-12-05 at 14:40 UTC, when grid v2 finished, this
# line was run with --jobs 2 instead (the same runs, two at a time; the specs do not depend on it).
run
