#!/usr/bin/env bash
# End-to-end trainer speed, side by side: one epoch on the same 1,600 CUHK03 pair-1 crops with the trainer as it
# was before the speed work (commit 7d6e395, checked out into a temporary git worktree), with this checkout's
# trainer told --no-retain-heap (freed memory back to the kernel, glibc's default), and with this checkout's
# trainer as it is. Paper recipe, 2 threads, quiet machine; the three alternate within each round. Progress bars
# and warnings go to OUT_DIR/stderr.log.
# Usage: bash benchmarks/training/trainer_epoch.sh DATA_ROOT OUT_DIR [VARIANT] [ROUNDS]
set -euo pipefail
data=$(cd "${1:?data root (e.g. ../shared/data/cuhk03-pair1)}" && pwd)
mkdir -p "${2:?scratch folder}"
out=$(cd "$2" && pwd)
variant=${3:-small}
rounds=${4:-1}
repo=$(cd "$(dirname "$0")/../.." && pwd)
old="$out/old-trainer"
[ -d "$old" ] || git -C "$repo" worktree add --detach "$old" 7d6e395 >/dev/null
args=(--data "$data" --dataset cuhk03_pair --variant "$variant" --epochs 1 --max-images 1600 --threads 2 --seed 0 --overwrite)
uptime
for round in $(seq "$rounds"); do
  (cd "$old" && PYTHONPATH="$old" python -m han_deploy.train.cli "${args[@]}" --output "$out/$variant-old-$round" 2>>"$out/stderr.log" | tail -1)
  python -m han_deploy.train.cli "${args[@]}" --no-retain-heap --output "$out/$variant-unmapped-$round" 2>>"$out/stderr.log" | tail -1
  python -m han_deploy.train.cli "${args[@]}" --output "$out/$variant-new-$round" 2>>"$out/stderr.log" | tail -1
done
uptime
python - "$out" "$variant" "$rounds" <<'PY'
import json, statistics, sys
from pathlib import Path
out, variant, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rate(kind: str, r: int) -> float:
    return json.loads((out / f"{variant}-{kind}-{r}" / "train_log.jsonl").read_text().splitlines()[0])["images_per_s"]
runs = {k: [rate(k, r) for r in range(1, rounds + 1)] for k in ("old", "unmapped", "new")}
ratio = {f"{k}_vs_{b}": [n / o for n, o in zip(runs[k], runs[b])] for k, b in (("unmapped", "old"), ("new", "old"), ("new", "unmapped"))}
medians = {f"median_{k}": statistics.median(v) for k, v in ratio.items()}
print(json.dumps({"variant": variant, "images_per_s": runs} | ratio | medians, indent=2))
PY
