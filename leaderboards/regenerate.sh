#!/usr/bin/env bash
# Regenerate the synthetic leaderboard, leaderboards/synthetic.{md,json,html,png}, from fresh
# `alignbench eval` runs of the bundled tiny models on the offline synthetic suite (CPU, fp32).
#
#   bash leaderboards/regenerate.sh
#   MODELS="meter-tiny-random other-tiny-model" bash leaderboards/regenerate.sh
#
# MODELS      registered models to evaluate (default: the bundled tiny models listed below)
# RUNS        folder for the result files (default: results/leaderboards/synthetic; re-runs
#             overwrite it, nothing is resumed)
# ALIGNBENCH  the command to run (default: alignbench; e.g. "python -m alignbench")
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS="${MODELS:-glscl-tiny meter-tiny meter-tiny-random}"
RUNS="${RUNS:-results/leaderboards/synthetic}"
ALIGNBENCH="${ALIGNBENCH:-alignbench}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

model_dirs=()
for model in $MODELS; do
  $ALIGNBENCH eval --model "$model" --task align-bench-synth --output "$RUNS" \
    --device cpu --precision fp32 --batch-size 25 --no-resume --quiet
  model_dirs+=("$RUNS/$model")
done

$ALIGNBENCH leaderboard "${model_dirs[@]}" \
  --title "ALIGN-BENCH synthetic suite: bundled tiny models (measured)" \
  --output leaderboards/synthetic.md --output leaderboards/synthetic.json --output leaderboards/synthetic.html \
  --chart leaderboards/synthetic.png
