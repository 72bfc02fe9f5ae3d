"""PNG of training curves from ``train_log.jsonl``: losses, train accuracy per branch, and eval metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch entries of a ``train_log.jsonl`` (one JSON object per line)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(entries: list[dict[str, Any]], out: str | os.PathLike[str], title: str = "") -> Path:
    """Write loss / accuracy (/ eval metric) panels against epoch to ``out`` (PNG) atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    evals = [e for e in entries if e.get("eval")]
    ncols = 3 if evals else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 3.8))
    epochs = [e["epoch"] for e in entries]
    loss_keys = sorted({k for e in entries for k in e.get("loss", {})})
    for key in loss_keys:
        axes[0].plot(epochs, [e["loss"].get(key, float("nan")) for e in entries], marker=".", label=key)
    axes[0].set(xlabel="epoch", ylabel="loss (epoch mean)", title="training loss")
    acc_keys = sorted({k for e in entries for k in e.get("train_acc", {})})
    for key in acc_keys:
        axes[1].plot(epochs, [100 * e["train_acc"].get(key, float("nan")) for e in entries], marker=".", label=key)
    axes[1].set(xlabel="epoch", ylabel="%", title="training accuracy", ylim=(0, 100))
    if evals:
        for key in ("R1", "mAP", "mINP"):
            axes[2].plot([e["epoch"] for e in evals], [100 * e["eval"][key] for e in evals], marker="o", label=key)
        axes[2].set(xlabel="epoch", ylabel="%", title=evals[-1].get("eval_label", "evaluation"), ylim=(0, 100))
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out
