#!/usr/bin/env bash
# End-to-end trainer speed, side by side: one epoch on the same 1,600 CUHK03 pair-1 crops with the trainer as it
# was before the speed work (commit 7d6e395, checked out into a temporary git worktree) and with this checkout's
# trainer in the configurations named by KINDS (default "old new amp"):
#   old       the trainer of commit 7d6e395
#   unmapped  this trainer told --no-retain-heap (freed memory back to the kernel, glibc's default)
#   new       this trainer as it is (float32)
#   amp       this trainer with --amp (bf16 autocast, strided depthwise convolutions in float32)
# Paper recipe, 2 threads, quiet machine; the kinds alternate within each round. Progress bars and warnings go to
# OUT_DIR/stderr.log. Prints images/s per kind and round, each kind's ratio to the first kind of KINDS, and amp's
# ratio to new when both run.
# Usage: [KINDS="old new amp"] bash benchmarks/training/trainer_epoch.sh DATA_ROOT OUT_DIR [VARIANT] [ROUNDS]
set -euo pipefail
data=$(cd "${1:?data root (e.g. ../shared/data/cuhk03-pair1)}" && pwd)
mkdir -p "${2:?scratch folder}"
out=$(cd "$2" && pwd)
variant=${3:-small}
rounds=${4:-1}
read -ra kinds <<< "${KINDS:-old new amp}"
[ ${#kinds[@]} -gt 0 ] || { echo "KINDS is empty: name one or more of old, unmapped, new, amp" >&2; exit 2; }
for kind in "${kinds[@]}"; do
  case "$kind" in old|unmapped|new|amp) ;; *) echo "unknown kind '$kind' in KINDS (old, unmapped, new, amp)" >&2; exit 2 ;; esac
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
old="$out/old-trainer"
args=(--data "$data" --dataset cuhk03_pair --variant "$variant" --epochs 1 --max-images 1600 --threads 2 --seed 0 --overwrite)
train() {  # KIND ROUND: one epoch with that trainer; prints its last line
  local kind=$1 dest="$out/$variant-$1-$2"
  case "$kind" in
    old)
      [ -d "$old" ] || git -C "$repo" worktree add --detach "$old" 7d6e395 >/dev/null
      (cd "$old" && PYTHONPATH="$old" python -m han_deploy.train.cli "${args[@]}" --output "$dest") ;;
    unmapped) python -m han_deploy.train.cli "${args[@]}" --no-retain-heap --output "$dest" ;;
    new) python -m han_deploy.train.cli "${args[@]}" --output "$dest" ;;
    amp) python -m han_deploy.train.cli "${args[@]}" --amp --output "$dest" ;;
  esac 2>>"$out/stderr.log" | tail -1
}
uptime
for round in $(seq "$rounds"); do
  for kind in "${kinds[@]}"; do train "$kind" "$round"; done
done
uptime
python - "$out" "$variant" "$rounds" "${kinds[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path
out, variant, rounds, kinds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def rate(kind: str, r: int) -> float:
    return json.loads((out / f"{variant}-{kind}-{r}" / "train_log.jsonl").read_text().splitlines()[0])["images_per_s"]
runs = {k: [rate(k, r) for r in range(1, rounds + 1)] for k in kinds}
base = kinds[0]
pairs = [(k, base) for k in kinds[1:]] + ([("amp", "new")] if {"amp", "new"} <= set(kinds) and base != "new" else [])
ratio = {f"{k}_vs_{b}": [n / o for n, o in zip(runs[k], runs[b])] for k, b in pairs}
medians = {f"median_{k}": statistics.median(v) for k, v in ratio.items()}
print(json.dumps({"variant": variant, "images_per_s": runs} | ratio | medians, indent=2))
PY
