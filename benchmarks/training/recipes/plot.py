"""Recipe comparison: validation mAP and R1 against wall minutes, one line per candidate run.

Reads ``RUNS/<name>/train_log.jsonl`` (han-train with ``--val-ids``), writes a PNG and a JSON summary
(per run: command, per-epoch minutes and validation metrics). Minutes are cumulative training-epoch
plus evaluation wall seconds (``budget_spent_s`` in the log: the decode-once cache build included).
Runs made on another machine than the budget's (the GPU search, ``gpu_search.sh``) are plotted against
epochs instead (``--x epoch``): their minutes say nothing of the CPU's.
Usage: python benchmarks/training/recipes/plot.py RUNS --png OUT.png --json OUT.json [--x epoch]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from han_deploy.train.curves import read_log


def summarize(run: Path) -> dict:
    """The command and the per-epoch (minutes, validation metrics) of one run folder."""
    entries = read_log(run / "train_log.jsonl")
    config = json.loads((run / "config.json").read_text())
    points = [
        {"epoch": e["epoch"], "minutes": e.get("budget_spent_s", float("nan")) / 60, "lr": e["lr"], "loss": e["loss"]["total"]}
        | {"loss_terms": e["loss"]}
        | {"train_acc": e["train_acc"], "images_per_s": e["images_per_s"]}
        | ({"eval": e["eval"], "eval_label": e["eval_label"]} if "eval" in e else {})
        for e in entries
    ]
    return {"command": config["invocations"][0]["command"], "train": config["train"], "epochs": points}


def plot(summary: dict[str, dict], out: Path, title: str, x: str = "minutes") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    colours = plt.get_cmap("tab20").colors  # one colour per run: the default cycle repeats after 10
    for i, (name, run) in enumerate(summary.items()):
        evals = [p for p in run["epochs"] if "eval" in p]
        for ax, key in zip(axes, ("mAP", "R1"), strict=True):
            ys = [100 * p["eval"][key] for p in evals]
            ax.plot([p[x] for p in evals], ys, marker="o", color=colours[(2 * i) % 20 + (i // 10) % 2], label=name)
    for ax, key in zip(axes, ("mAP", "R1"), strict=True):
        ax.set(xlabel="wall minutes" if x == "minutes" else "epoch", ylabel=f"validation {key} (%)", title=f"validation {key}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, help="folder holding one han-train output folder per candidate")
    p.add_argument("--png", type=Path, required=True, help="plot to write")
    p.add_argument("--json", type=Path, required=True, help="summary to write")
    p.add_argument("--title", default="recipe candidates on a validation split", help="plot title")
    p.add_argument("--x", choices=("minutes", "epoch"), default="minutes", help="x axis: wall minutes, or epochs")
    args = p.parse_args()
    runs = sorted(d for d in args.runs.iterdir() if (d / "train_log.jsonl").is_file())
    if not runs:
        raise SystemExit(f"no han-train run folders (with train_log.jsonl) under {args.runs}")
    summary = {d.name: summarize(d) for d in runs}
    unevaluated = [name for name, run in summary.items() if not any("eval" in p for p in run["epochs"])]
    if unevaluated:
        raise SystemExit(f"runs without any evaluation (train with --val-ids and --eval-every): {', '.join(unevaluated)}")
    plot(summary, args.png, args.title, args.x)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    for name, run in summary.items():
        last = [p for p in run["epochs"] if "eval" in p][-1]
        score = f"mAP {100 * last['eval']['mAP']:5.1f}  R1 {100 * last['eval']['R1']:5.1f}"
        print(f"{name:<24} epoch {last['epoch']:3d} {last['minutes']:6.1f} min  {score}")


if __name__ == "__main__":
    main()
