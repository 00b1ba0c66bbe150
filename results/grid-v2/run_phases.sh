#!/bin/sh
# How results/grid-v2 is run (issue 13): the whole grid of configs/grid_fmnist_v2.json, in three
# phases so that complete cells (three seeds) arrive early. Every phase is the same grid: a phase
# narrows `cells` only, which leaves each run's spec unchanged, and finished runs are skipped, so
# the last line alone also finishes (or resumes) everything.
#   phase 1: the ablation without MTM on 600 images (seit, ca, ta, ita, seitpp_nomtm)
#   phase 2: the ablation with MTM on 600 images (seit_mtm, ca_mtm, ta_mtm, seitpp), so that every
#            component has its cells on one budget before the storage sweep (order changed at
#            08:30 UTC on 2026-12-05, after 11 runs; no run's spec changed), one seed at a time
#            (pre-trainings, then the fine-tunings from them: since 09:55 UTC, after the first
#            two pre-trainings; `--seeds` narrows the expansion and leaves every spec unchanged)
#   phase 3: every run without MTM pre-training (+ the 2400/9600 budgets, 16x16 tokens, pixels)
#   phase 4: the whole grid (the MTM pre-trainings at 2400/9600 and the fine-tunings from them),
#            one seed at a time, so that every cell of the storage sweep has two seeds before any
#            has three (changed at 11:47 UTC on 2026-12-05: phase 3 had finished seed 0 of its
#            cells and was stopped with checkpoints; the runs left of phase 3 come with phase 4's
#            seeds; no run's spec changed)
# Two runs at a time, one BLAS/OpenMP thread each (two cores). From the repository root:
#   nohup sh results/grid-v2/run_phases.sh > results/grid-v2/ablate.log 2>&1 &
set -e
export SEITPP_BLAS_THREADS=1
run() { deno task ablate --grid configs/grid_fmnist_v2.json --out results/grid-v2 --jobs 2 "$@"; }
run --cells='[{"budgets":["fm8-600"],"arms":["seit","ca","ta","ita","seitpp_nomtm"]}]'
for seed in 0 1 2; do
  run --seeds="[$seed]" --cells='[{"budgets":["fm8-600"],"arms":["seit_mtm","ca_mtm","ta_mtm","seitpp"]}]'
done
run --seeds='[0]' --cells='[{"budgets":["fm8-600","fm8-2400","fm8-9600"],"arms":["seit","seitpp_nomtm"]},{"budgets":["fm8-600"],"arms":["ca","ta","ita"]},{"budgets":["fm16-2400"],"arms":["seit"]},{"budgets":["px28-9600","px14-9600"],"arms":["pixel"]}]'
for seed in 0 1 2; do
  run --seeds="[$seed]"
done
run
