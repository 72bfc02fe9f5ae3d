"""The demo's report: one Markdown file with the stage table, metrics, plots and pictures, plus ``summary.json``."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_plot(metrics: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars of R1 / mAP / mINP (percent) per evaluated model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(metrics)
    keys = ("R1", "mAP", "mINP")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(labels)), 3.6))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        xs = [j + (i - 1) * width for j in range(len(labels))]
        bars = ax.bar(xs, [100 * metrics[m][key] for m in labels], width, label=key)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(labels)), [lab.replace(" (", "\n(") for lab in labels], fontsize=7)
    ax.set(ylabel="%", ylim=(0, 105), title="retrieval accuracy on the test split")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _machine() -> str:
    parts = [platform.platform(), f"{os.cpu_count()} logical CPUs", f"Python {platform.python_version()}"]
    for mod in ("torch", "onnxruntime", "cv2"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return ", ".join(parts)


def _image(report_dir: Path, path: Path, alt: str) -> str:
    return f"![{alt}]({os.path.relpath(path, report_dir)})"


def write_report(demo: Any, total_seconds: float) -> Path:
    """Write ``<out>/report.md`` and ``<out>/summary.json`` for a finished ``pipeline.Demo``; return the report path."""
    out: Path = demo.s.out
    res: dict[str, Any] = demo.results
    md: list[str] = [
        "# han-demo report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, total {total_seconds:.0f} s. Machine: {_machine()}.",
        "",
        "Data: "
        + (
            f"`{demo.s.data}` ({demo.s.dataset})"
            if demo.s.data
            else "synthetic people drawn by `han_deploy.data.synth` (no real person)"
        )
        + (" — `--quick` sizes, the numbers mean little." if demo.s.quick else "."),
        "",
        "## Stages",
        "",
        markdown_table(
            ["stage", "status", "seconds", "notes"],
            [
                [o.name, o.status, f"{o.seconds:.1f}", "<br>".join(line.replace("|", "\\|") for line in o.lines[:3])]
                for o in demo.outcomes
            ],
        ),
    ]
    if "splits" in res:
        md += ["", "## Dataset", "", "```", res["splits"].statistics(), "```"]
    if demo.metrics:
        plot = accuracy_plot(demo.metrics, out / "plots" / "accuracy.png")
        md += [
            "",
            "## Accuracy",
            "",
            "Single query, L2 distance on the 1024-D embedding, same-id same-camera gallery entries and junk removed.",
            "",
            markdown_table(
                ["model", *METRIC_KEYS],
                [[label, *(f"{100 * m[k]:.1f}" for k in METRIC_KEYS)] for label, m in demo.metrics.items()],
            ),
            "",
            _image(out, plot, "accuracy"),
        ]
    if res.get("curves"):
        md += ["", "## Training", "", _image(out, res["curves"], "training curves")]
    for heading, section in demo.sections.items():
        md += ["", f"## {heading}", "", "```", *section.lines, "```"]
        md += ["\n" + _image(out, Path(p), heading) for p in section.plots]
    if res.get("attention_pictures"):
        md += [
            "",
            "## Attention",
            "",
            "Per picture: the input; the 4 hard-attention regions of levels 1-3 (coloured boxes, dashed edge = the region "
            "continues outside the image); the soft spatial attention of levels 1-3 (heat map, red = high, min-max per map).",
            "",
        ]
        md += [_image(out, p, p.stem) for p in res["attention_pictures"]]
    if res.get("rank_pictures"):
        md += ["", "## Ranked results", "", "Query (black) and its top 10 gallery matches: green = same person, red = wrong.", ""]
        md += [_image(out, p, p.stem) + "\n" for p in res["rank_pictures"]]
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n", encoding="utf-8")
    summary = {
        "total_seconds": total_seconds,
        "stages": [{"name": o.name, "status": o.status, "seconds": o.seconds, "notes": o.lines} for o in demo.outcomes],
        "metrics": demo.metrics,
        "report": str(report),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return report
