"""Benchmark results for people (a text or Markdown table) and machines (JSON), and PNG plots.

The JSON document's fields are documented in ``docs/benchmarking.md``; :data:`SCHEMA` names its version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA = "han-bench/1"
_COLUMNS = ("model", "backend", "prec", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "spread", "peak MiB", "GFLOP/s", "eff")


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def result_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per (case, batch); one row with the reason for a case that did not run."""
    rows = []
    for res in results:
        head = [res["model"]["name"], res["backend"], res["precision"]]
        if res["status"] != "ok":
            rows.append([*head, "-", f"{res['status'].upper()}: {res['reason']}"])
            continue
        for b in res["batches"]:
            if b.get("status") != "ok":
                rows.append([*head, str(b["batch"]), f"FAILED: {b['reason']}"])
                continue
            mem = b["memory"].get("cuda_peak_mib") or b["memory"].get("peak_rss_delta_mib")
            rows.append(
                [
                    *head,
                    str(b["batch"]),
                    _fmt(b["p50_ms"], ".2f"),
                    _fmt(b["p90_ms"], ".2f"),
                    _fmt(b["p99_ms"], ".2f"),
                    _fmt(b["throughput_ips"], ".1f"),
                    f"{b['spread']:.1%}" + (" NOISY" if b["noisy"] else ""),
                    _fmt(mem, ".1f"),
                    _fmt(b.get("achieved_gflops"), ".1f"),
                    _fmt(b.get("efficiency"), ".1%"),
                ]
            )
    return rows


def text_table(results: Sequence[dict[str, Any]]) -> str:
    """Fixed-width table; rows of cases that did not run carry the reason in place of numbers."""
    rows = result_rows(results)
    widths = [len(c) for c in _COLUMNS]
    for r in rows:
        if len(r) == len(_COLUMNS):
            widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]

    def line(cells: Sequence[str]) -> str:
        if len(cells) < len(_COLUMNS):  # a reason spans the numeric columns
            return "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)) + "  " + cells[-1]
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(_COLUMNS), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    out += [line(r) for r in rows]
    return "\n".join(out)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    rows = result_rows(results)
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join("---" if i < 3 else "---:" for i in range(len(_COLUMNS))) + "|"]
    for r in rows:
        if len(r) < len(_COLUMNS):
            r = r[:-1] + [r[-1]] + [""] * (len(_COLUMNS) - len(r))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def legend(peak_gflops: float | None, library: str | None = None) -> str:
    """What the columns mean, one paragraph (printed under the table)."""
    peak_txt = f"{peak_gflops:.1f} GFLOP/s ({library})" if peak_gflops else "not measured (pass --peak)"
    return (
        "p50: median of the repeats' medians; p90/p99 over all timed calls; img/s = batch / p50; spread = (max - min) / median "
        "of the repeat medians (NOISY above the threshold); peak MiB: process peak RSS above the RSS before the batch "
        "(CUDA: peak allocated); GFLOP/s = FLOPs/image (2 x MACs) x img/s; "
        "eff = GFLOP/s / the GEMM peak measured in the same run, "
        f"{peak_txt}."
    )


def write_json(doc: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def _series(results: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int], list[float], list[float]]]:
    out = []
    for res in results:
        ok = [b for b in res["batches"] if b.get("status") == "ok"]
        if res["status"] == "ok" and ok:
            out.append((res, [b["batch"] for b in ok], [b["p50_ms"] for b in ok], [b["throughput_ips"] for b in ok]))
    return out


def plot_latency_throughput(results: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path | None:
    """Two panels against batch size (log axes): p50 latency per batch, throughput in images/s. None if nothing ran.

    One colour per model, one line style and marker per backend and precision.
    """
    series = _series(results)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(res["model"]["name"] for res, *_ in series))
    kinds = list(dict.fromkeys(res["key"].split("/", 1)[1] for res, *_ in series))
    colours = plt.get_cmap("tab10")
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "P")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for res, batches, p50, ips in series:
        colour = colours(models.index(res["model"]["name"]) % 10)
        line, marker = styles[kinds.index(res["key"].split("/", 1)[1]) % len(styles)]
        kw = {"color": colour, "linestyle": line, "marker": marker, "label": res["key"]}
        ax1.plot(batches, p50, **kw)
        ax2.plot(batches, ips, **kw)
    for ax, ylabel in ((ax1, "p50 latency per batch (ms)"), (ax2, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title or "han-bench")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_bars(
    groups: Sequence[str], series: Mapping[str, Sequence[float | None]], path: str | os.PathLike[str], ylabel: str, title: str
) -> Path:
    """Grouped bars: one group per model, one bar per series (backend/precision); missing values leave a gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8))
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        pts = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pts:
            bars = ax.bar([p[0] for p in pts], [p[1] for p in pts], width, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
