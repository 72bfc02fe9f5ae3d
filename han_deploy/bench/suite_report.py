"""Markdown and plots for a benchmark-suite document (``benchmarks/suite.py``): machine, peak, summary, ratios, full table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import markdown_table, plot_bars, plot_latency_throughput

_FLAG_NOTE = "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"


def _f(v: Any, spec: str, missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def machine_lines(doc: dict[str, Any]) -> list[str]:
    """Machine, versions, settings and the load around the run, as Markdown bullets."""
    m = doc["machine"]
    cpu = m["cpu"]
    have = [f for f, on in cpu["flags"].items() if on]
    lack = [f for f in _FLAG_NOTE if not cpu["flags"].get(f)]
    v = m["versions"]
    vers = ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "onnxruntime", "onnx", "numpy", "fvcore") if v.get(k))
    lines = [
        f"- CPU: **{cpu['model']}** ({cpu['vendor']}, family/model/stepping {cpu['family_model_stepping']}), "
        f"{cpu['usable_cpus']} usable of {cpu['logical_cpus']} logical CPUs{', virtual machine' if cpu['hypervisor'] else ''}",
        f"- CPU flags: {', '.join(have) or 'none of interest'}; absent: {', '.join(lack) or 'none'}",
        f"- GPU: {', '.join(m['gpu']['devices']) or 'none'}",
        f"- Versions: {vers}; han-deploy {v.get('han_deploy')} at git {v.get('git_commit', '?')}; {v.get('platform')}",
        f"- Settings: {doc['threads']} intra-op threads per backend; idle threads sleep "
        f"(ONNX Runtime allow_spinning=0, OMP_WAIT_POLICY={doc['spinning'].get('OMP_WAIT_POLICY')}); "
        "all cases interleaved per batch size",
        f"- Timing: {_plan_text(doc['timing'])}",
        f"- Command: `{doc['command']}` ({doc.get('wall_s', '?')} s)",
    ]
    if doc.get("exports"):
        lines.append("- ONNX artifacts: " + "; ".join(f"{k}: {v}" for k, v in doc["exports"].items()))
    lines += load_lines(doc)
    return lines


def _plan_text(t: dict[str, Any]) -> str:
    per = f"{t['iters']} calls" if t.get("iters") else f"{t['duration_s']} s (at least {t['min_iters']} calls)"
    return (
        f"{t['warmup']} warm-up calls, then {t['repeats']} repeats of {per} per case and batch size; p50 = median of the "
        f"repeat medians; NOISY when the repeat medians spread by more than {t['noise_threshold']:.0%}"
    )


def shared_cpu(doc: dict[str, Any]) -> bool:
    """Whether other processes competed for the CPU: a 1-minute load average above 0.5 before or after the run."""
    loads = [doc[k]["loadavg_1_5_15"] for k in ("load_before", "load_after") if doc.get(k, {}).get("loadavg_1_5_15")]
    return any(load[0] > 0.5 for load in loads)


def load_lines(doc: dict[str, Any]) -> list[str]:
    out = []
    for key, when in (("load_before", "before"), ("load_after", "after")):
        snap = doc.get(key) or {}
        procs = ", ".join(f"{p['command']} {p['cpu_percent']:.0f}%" for p in (snap.get("top_processes") or [])[:5])
        out.append(
            f"- Load {when} ({snap.get('utc')}): load average {snap.get('loadavg_1_5_15')}; busiest processes: {procs or '?'}"
        )
    if shared_cpu(doc):
        out.append(
            "- **Other processes were running on this CPU during the run** (load average above 0.5 on a "
            f"{doc['machine']['cpu']['usable_cpus']}-CPU machine): absolute numbers are pessimistic; the ratios, from "
            "interleaved cases, share the noise"
        )
    return out


def _row(res: dict[str, Any], batch: int) -> dict[str, Any] | None:
    return next((r for r in res["batches"] if r["batch"] == batch and r.get("status") == "ok"), None)


def summary_table(doc: dict[str, Any]) -> str:
    """One line per case: GFLOPs/params, p50 at the smallest batch, throughput at each batch, efficiency at the largest."""
    batches = sorted({r["batch"] for res in doc["results"] for r in res["batches"]})
    if not batches:
        return "(nothing ran)"
    lo, hi = batches[0], batches[-1]
    head = ["model", "GFLOPs/img", "params (M)", "backend", f"b{lo} p50 ms"] + [f"b{b} img/s" for b in batches] + [f"eff @b{hi}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|"]
    for res in doc["results"]:
        m = res["model"]
        gfl = _f(m["flops"] and m["flops"] / 1e9, ".3f")
        params = _f(m["params"] and m["params"] / 1e6, ".2f")
        what = f"{res['backend']} {res['precision']}"
        if res["status"] != "ok":
            lines.append(
                f"| {m['name']} | {gfl} | {params} | {what} | {res['status']}: {res['reason']} |" + " |" * (len(head) - 5)
            )
            continue
        cells = []
        r_lo = _row(res, lo)
        cells.append(_f(r_lo and r_lo["p50_ms"], ".2f") + (" (noisy)" if r_lo and r_lo["noisy"] else ""))
        for b in batches:
            r = _row(res, b)
            cells.append(_f(r and r["throughput_ips"], ".1f") + (" (noisy)" if r and r["noisy"] else ""))
        r_hi = _row(res, hi)
        cells.append(_f(r_hi and r_hi.get("efficiency"), ".1%"))
        lines.append(f"| {m['name']} | {gfl} | {params} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(doc: dict[str, Any]) -> str:
    batches = sorted({int(b) for e in doc["ratios"] for b in e["speedup"]})
    lines = [
        "| speed-up (reference time / subject time) | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---:|" * len(batches),
    ]
    for e in doc["ratios"]:
        vals = [e["speedup"].get(str(b)) for b in batches]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {e['label']} | " + " | ".join(_f(v, ".2f", "-") + ("x" if v is not None else "") for v in vals) + " |")
    return "\n".join(lines)


def peak_table(doc: dict[str, Any]) -> str:
    start, end = doc["gemm_peak"]["start"], doc["gemm_peak"]["end"]
    lines = [f"| GEMM {start.get('size')}x{start.get('size')} | start of run | end of run |", "|---|---:|---:|"]
    for lib in start.get("libraries", {}):
        a, b = start["libraries"][lib], end.get("libraries", {}).get(lib, {})
        unit = "GOP/s" if "u8s8" in lib else "GFLOP/s"
        cells = [_f(x.get("gflops"), ".1f", x.get("skipped", "-")) for x in (a, b)]
        lines.append(f"| {lib} ({unit}) | {cells[0]} | {cells[1]} |")
    used = doc["gemm_peak"]["used"]
    lines.append("")
    lines.append(
        f"Efficiency is against **{_f(used.get('peak_gflops'), '.1f')} GFLOP/s** ({used.get('library')}, the best FP32 library "
        f"in the better of the two measurements); INT8 cases are also compared with the INT8 GEMM peak "
        f"({_f(used.get('int8_peak_gops'), '.1f')} GOP/s) in the JSON (`efficiency_vs_int8_peak`)."
    )
    return "\n".join(lines)


def suite_plots(doc: dict[str, Any], out: Path, tag: str) -> list[Path]:
    """Latency/throughput against batch size for every case, and throughput bars per model at each batch size."""
    written = []
    p = plot_latency_throughput(doc["results"], out / f"{tag}-latency.png", title=f"{tag}: p50 latency and throughput")
    if p:
        written.append(p)
    batches = sorted({r["batch"] for res in doc["results"] for r in res["batches"]})
    models = list(dict.fromkeys(res["model"]["name"] for res in doc["results"]))
    kinds = list(dict.fromkeys(f"{res['backend']} {res['precision']}" for res in doc["results"]))
    if batches and models:
        fig_batch = batches[-1]
        series: dict[str, list[float | None]] = {}
        for kind in kinds:
            vals: list[float | None] = []
            for name in models:
                res = next(
                    (r for r in doc["results"] if r["model"]["name"] == name and f"{r['backend']} {r['precision']}" == kind), None
                )
                row = _row(res, fig_batch) if res and res["status"] == "ok" else None
                vals.append(row["throughput_ips"] if row else None)
            series[kind] = vals
        written.append(
            plot_bars(
                models,
                series,
                out / f"{tag}-throughput.png",
                "images/s",
                f"{tag}: throughput at batch {fig_batch} (higher is better)",
            )
        )
    return written


def suite_markdown(doc: dict[str, Any], plots: list[Path]) -> str:
    from .report import legend

    used = doc["gemm_peak"]["used"]
    parts = [
        f"# Benchmark suite `{doc['suite']}`",
        "",
        *machine_lines(doc),
        "",
        "## Summary",
        "",
        summary_table(doc),
        "",
        "## Ratios from the same run",
        "",
        ratio_table(doc),
        "",
        "FLOPs ratios (how much more arithmetic per image): "
        + ", ".join(f"{k} {v:.2f}x" for k, v in doc.get("flops_ratios", {}).items()),
        "",
        "## Machine peak (same run)",
        "",
        peak_table(doc),
        "",
        "## All measurements",
        "",
        markdown_table(doc["results"]),
        "",
        legend(used.get("peak_gflops"), used.get("library")),
        "",
    ]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(parts)


def torch_eager_markdown(doc: dict[str, Any]) -> str:
    """The PyTorch eager CPU forward-latency record of the HAN variants (what issue 2 asked for), from a suite run."""
    batches = sorted({r["batch"] for res in doc["results"] for r in res["batches"]})
    lines = [
        "# PyTorch eager forward latency of HAN (CPU)",
        "",
        "From the benchmark suite run below (`benchmarks/suite.py`); random weights (latency does not depend on them), "
        "eval mode, `torch.inference_mode()`, FP32, NCHW input 3x160x64.",
        "",
        "| model | GFLOPs/img | batch | p50 ms / batch | ms / image | images/s | p90 ms | spread of repeats | repeats x calls |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in doc["results"]:
        if res["backend"] != "torch" or not res["model"]["name"].startswith("han_") or res["status"] != "ok":
            continue
        for b in batches:
            r = _row(res, b)
            if r is None:
                continue
            lines.append(
                f"| {res['model']['name']} | {res['model']['flops'] / 1e9:.3f} | {b} | {r['p50_ms']:.2f} | "
                f"{r['p50_ms'] / b:.2f} | "
                f"{r['throughput_ips']:.1f} | {r['p90_ms']:.2f} | {r['spread']:.1%}{' NOISY' if r['noisy'] else ''} | "
                f"{r['repeats']} x {r['iters'] // max(1, r['repeats'])} |"
            )
    lines += ["", *machine_lines(doc), ""]
    return "\n".join(lines)
