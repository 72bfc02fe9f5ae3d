"""Collect the recorded han-eval results and training logs under benchmarks/training/ into results.md and a plot.

Usage: python benchmarks/training/summarize.py  (reads the JSON files named in ROWS and the logs in RUNS,
all committed next to this file, and writes results.md and cuhk03_pair1/budget.png). Only numbers and
plots are read and written, never images of a dataset; the commands that made each file are in README.md.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYNTH = "synthetic (han-synth --ids 100 --cameras 6 --seed 0), query -> gallery"
CUHK03 = "real CUHK03 pair 1, test split (README protocol: mean of a->b and b->a; seed 0, one run each)"
# the fast preset before 2026-11-26 (docs/training.md "Recipes"), with which the older CUHK03 runs were trained
OLD_FAST = "--recipe fast (erasing 0.5, weight decay 5e-4)"
NEW_FAST = "--recipe fast (erasing 0.7, weight decay 1e-3)"
# (table, row label, han-eval JSON relative to HERE)
ROWS = [
    (SYNTH, "colour histogram", "synth100_histogram.json"),
    (SYNTH, "HAN-small, untrained", "synth100_untrained_small.json"),
    (SYNTH, "HAN-small, trained", "synth100_trained_small.json"),
    (CUHK03, "colour histogram", "cuhk03_pair1/histogram.json"),
    (CUHK03, "HAN-small, untrained", "cuhk03_pair1/untrained_small.json"),
    (CUHK03, f"HAN-small, {OLD_FAST}, 95-minute budget", "cuhk03_pair1/small_fast_95min.json"),
    (CUHK03, f"HAN-small, {OLD_FAST}, 140-minute budget", "cuhk03_pair1/small_fast_140min.json"),
    (CUHK03, f"HAN-medium, {OLD_FAST}, 140-minute budget", "cuhk03_pair1/medium_fast_140min.json"),
    (CUHK03, f"HAN-large, {OLD_FAST}, 140-minute budget", "cuhk03_pair1/large_fast_140min.json"),
    (CUHK03, f"HAN-small, {NEW_FAST}, 125-minute budget", "cuhk03_pair1/small_fast_125min.json"),
    (CUHK03, f"HAN-medium, {NEW_FAST}, 125-minute budget", "cuhk03_pair1/medium_fast_125min.json"),
    (CUHK03, f"HAN-large, {NEW_FAST}, 125-minute budget", "cuhk03_pair1/large_fast_125min.json"),
    (CUHK03, f"HAN-small, {NEW_FAST}, 125-minute budget, trainer keeping freed memory", "cuhk03_pair1/small_heap_125min.json"),
    (CUHK03, f"HAN-small, {NEW_FAST}, 125-minute budget, --amp (bf16)", "cuhk03_pair1/small_amp_125min.json"),
]
# (run label, train_log.jsonl relative to HERE): the CUHK03 runs are also drawn in cuhk03_pair1/budget.png
RUNS = [
    ("synthetic HAN-small, paper recipe", "synth100_small_train_log.jsonl"),
    ("CUHK03 HAN-small, fast, 95 min", "cuhk03_pair1/small_fast_95min_train_log.jsonl"),
    ("CUHK03 HAN-small, fast, 140 min", "cuhk03_pair1/small_fast_140min_train_log.jsonl"),
    ("CUHK03 HAN-medium, fast, 140 min", "cuhk03_pair1/medium_fast_140min_train_log.jsonl"),
    ("CUHK03 HAN-large, fast, 140 min", "cuhk03_pair1/large_fast_140min_train_log.jsonl"),
    ("CUHK03 HAN-small, fast (erasing 0.7, wd 1e-3), 125 min", "cuhk03_pair1/small_fast_125min_train_log.jsonl"),
    ("CUHK03 HAN-medium, fast (erasing 0.7, wd 1e-3), 125 min", "cuhk03_pair1/medium_fast_125min_train_log.jsonl"),
    ("CUHK03 HAN-large, fast (erasing 0.7, wd 1e-3), 125 min", "cuhk03_pair1/large_fast_125min_train_log.jsonl"),
    ("CUHK03 HAN-small, fast (erasing 0.7, wd 1e-3), 125 min, heap kept", "cuhk03_pair1/small_heap_125min_train_log.jsonl"),
    ("CUHK03 HAN-small, fast (erasing 0.7, wd 1e-3), 125 min, --amp", "cuhk03_pair1/small_amp_125min_train_log.jsonl"),
]
# (png under cuhk03_pair1/, title, runs drawn): one plot per preset and budget
PLOTS = [
    ("budget.png", f"CUHK03 pair 1, {OLD_FAST}, --budget-minutes 140", [r for r in RUNS if "140 min" in r[0]]),
    ("budget_125min.png", f"CUHK03 pair 1, {NEW_FAST}, --budget-minutes 125", [r for r in RUNS if "125 min" in r[0]]),
]
METRICS = ("R1", "R5", "R10", "mAP", "mINP")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _results(name: str) -> dict | None:
    """The ``results`` of a han-eval JSON, None when that file was not recorded."""
    path = HERE / name
    return json.loads(path.read_text())["results"] if path.exists() else None


def _log(name: str) -> list[dict]:
    """The epochs of a recorded train_log.jsonl, [] when it was not recorded."""
    path = HERE / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def metric_tables() -> str:
    """One Markdown table per dataset: each recorded model's metrics, with the per-direction rows of CUHK03."""
    out: list[str] = []
    current = None
    for table, label, name in ROWS:
        res = _results(name)
        if res is None:
            continue
        if table != current:
            current = table
            out += ["", f"**{table}**", "", "| features | " + " | ".join(METRICS) + " | re-ranked R1 / mAP |", "|---" * 7 + "|"]
        key = "mean" if "mean" in res else "q2g"
        rr = res.get(key + "+rerank")
        rerank = f"{_pct(rr['R1'])} / {_pct(rr['mAP'])}" if rr else "-"
        out.append(f"| {label} | " + " | ".join(_pct(res[key][m]) for m in METRICS) + f" | {rerank} |")
        if key == "mean":
            for d in ("a2b", "b2a"):
                out.append(f"| &nbsp;&nbsp;{d} | " + " | ".join(_pct(res[d][m]) for m in METRICS) + " | |")
    return "\n".join(out)


def run_summaries() -> str:
    """One Markdown row per recorded run: epochs, wall and CPU minutes, median speed, last loss and accuracy."""
    out = [
        "",
        "| run | epochs | wall time | CPU time | images/s (median epoch) | last loss | last train acc (global/local) |",
        "|---" * 7 + "|",
    ]
    for label, name in RUNS:
        entries = _log(name)
        if not entries:
            continue
        wall = sum(e["seconds"] for e in entries)
        cpu = f"{sum(e['cpu_seconds'] for e in entries) / 60:.1f} min" if all("cpu_seconds" in e for e in entries) else "n/a"
        speeds = sorted(e["images"] / e["seconds"] for e in entries)
        last = entries[-1]
        out.append(
            f"| {label} | {len(entries)} | {wall / 60:.1f} min | {cpu} | {speeds[len(speeds) // 2]:.1f} | "
            f"{last['loss']['total']:.3f} | {_pct(last['train_acc']['global'])} / {_pct(last['train_acc']['local'])} % |"
        )
    return "\n".join(out)


def plot_budget(path: Path, title: str, plotted: list[tuple[str, str]]) -> bool:
    """Training loss and accuracy against wall minutes for the ``plotted`` runs, test R1 / mAP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(label, entries) for label, entries in ((lb, _log(n)) for lb, n in plotted) if entries]
    if not runs:
        return False
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, entries in runs:
        minutes = list(itertools.accumulate(e["seconds"] / 60 for e in entries))
        final = next((e["eval"] for e in reversed(entries) if "eval" in e), None)
        score = f": test R1 {_pct(final['R1'])} / mAP {_pct(final['mAP'])}" if final else ""
        name = f"{label.removeprefix('CUHK03 ')} ({len(entries)} epochs){score}"
        ax_loss.plot(minutes, [e["loss"]["total"] for e in entries], marker=".", label=name)
        ax_acc.plot(minutes, [100 * e["train_acc"]["global"] for e in entries], marker=".", label=name)
    ax_loss.set(xlabel="wall minutes (2-core CPU)", ylabel="training loss (both branches)", title="loss")
    ax_acc.set(xlabel="wall minutes (2-core CPU)", ylabel="training accuracy, global branch (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: what each variant does with the same minutes")
    fig.legend(*ax_acc.get_legend_handles_labels(), loc="lower center", fontsize=8)  # below both panels
    fig.tight_layout(rect=(0, 0.05 * len(runs) + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    text = "# Training results (generated by summarize.py)\n" + metric_tables() + "\n\n## Runs\n" + run_summaries() + "\n"
    for png, title, plotted in PLOTS:
        if plot_budget(HERE / "cuhk03_pair1" / png, title, plotted):
            text += f"\n![{title}: training loss and accuracy against minutes](cuhk03_pair1/{png})\n"
    (HERE / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
