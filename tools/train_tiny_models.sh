#!/usr/bin/env bash
# Train the bundled tiny models and measure them on the synthetic suite, 3 seeds per recipe.
#
#   bash tools/train_tiny_models.sh            # 2 recipes x 3 seeds, then evaluate each run
#   SEEDS="0" RECIPES="glscl" bash tools/train_tiny_models.sh
#
# Each run writes runs/train/<recipe>-tiny-s<seed>.safetensors (+ .log.jsonl) and its
# synthetic-suite results under runs/train/eval/<recipe>-tiny-s<seed>/. Seed 0 of each recipe
# is the checkpoint shipped as glscl-tiny / meter-tiny (chosen before training, not by score).
# Training is deterministic given the seed and the number of CPU threads (OMP_NUM_THREADS,
# default 1: on a shared 2-core machine one thread per run is fastest; run recipes in parallel
# with `RECIPES=glscl bash ... & RECIPES=meter bash ...`).
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPES="${RECIPES:-glscl meter}"
SEEDS="${SEEDS:-0 1 2}"
OUT="${OUT:-runs/train}"
ALIGNBENCH="${ALIGNBENCH:-alignbench}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

for recipe in $RECIPES; do
  for seed in $SEEDS; do
    run="$recipe-tiny-s$seed"
    $ALIGNBENCH train --recipe "$recipe" --seed "$seed" --output "$OUT/$run.safetensors" --quiet
    $ALIGNBENCH eval --model meter-tiny-random --checkpoint "$OUT/$run.safetensors" \
      --task align-bench-synth --output "$OUT/eval/$run" --device cpu --precision fp32 \
      --batch-size 25 --no-resume --quiet
  done
done
