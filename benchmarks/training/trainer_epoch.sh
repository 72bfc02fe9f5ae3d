#!/usr/bin/env bash
# End-to-end trainer speed, side by side: one epoch of HAN-small on the same 1,600 CUHK03 pair-1 crops with the
# trainer as it was before the speed work (commit 7d6e395, checked out into a temporary git worktree) and with
# this checkout's trainer (decode-once cache, channels_last, foreach SGD). Paper recipe, 2 threads, quiet machine.
# Usage: bash benchmarks/training/trainer_epoch.sh DATA_ROOT OUT_DIR
set -euo pipefail
data=${1:?data root (e.g. ../shared/data/cuhk03-pair1)}
out=${2:?scratch folder}
repo=$(cd "$(dirname "$0")/../.." && pwd)
old="$out/old-trainer"
[ -d "$old" ] || git -C "$repo" worktree add --detach "$old" 7d6e395 >/dev/null
args=(--data "$data" --dataset cuhk03_pair --variant small --epochs 1 --max-images 1600 --threads 2 --seed 0 --overwrite)
uptime
for round in 1; do
  (cd "$old" && PYTHONPATH="$old" python -m han_deploy.train.cli "${args[@]}" --output "$out/old-$round" | tail -1)
  python -m han_deploy.train.cli "${args[@]}" --output "$out/new-$round" | tail -1
done
uptime
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rate = {k: [json.loads((out / f"{k}-{r}" / "train_log.jsonl").read_text())["images_per_s"] for r in (1,)] for k in ("old", "new")}
print(json.dumps(rate | {"speedup": [n / o for n, o in zip(rate["new"], rate["old"])]}, indent=2))
PY
