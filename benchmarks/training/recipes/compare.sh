#!/usr/bin/env bash
# Recipe comparison for the CPU budget: HAN-small, EPOCHS epochs each, on a validation split of 100 identities
# carved from CUHK03 pair-1's training identities (never the test split). One run at a time, 2 threads.
# Usage: bash benchmarks/training/recipes/compare.sh DATA_ROOT OUT_DIR [EPOCHS]
set -euo pipefail
data=${1:?data root (e.g. ../shared/data/cuhk03-pair1)}
out=${2:?output folder for the runs}
epochs=${3:-3}
common=(--data "$data" --dataset cuhk03_pair --variant small --val-ids 100 --seed 0 --threads 2 --epochs "$epochs" --eval-every 1 --overwrite)
declare -A candidates=(
  [paper]="--recipe paper"
  [fast_sgd]="--recipe fast"
  [fast_sgd_triplet]="--recipe fast --triplet 0.3"
  [fast_adam_triplet]="--recipe fast --triplet 0.3 --optimizer adam --lr 1e-3"
)
for name in paper fast_sgd fast_sgd_triplet fast_adam_triplet; do
  echo "== $name: han-train ${candidates[$name]}"
  # shellcheck disable=SC2086
  han-train "${common[@]}" ${candidates[$name]} --output "$out/$name"
done
