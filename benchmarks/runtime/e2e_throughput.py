#!/usr/bin/env python3
"""End-to-end extraction throughput (JPEG read + decode + crop + preprocess + inference) against inference alone.

CPU, ONNX Runtime FP32, batch 32, HAN small / medium / large. Per round and variant, timed back to back
on the same files so both see the same machine load:

- ``infer``: ``backend.infer`` on already-preprocessed batches of 32 (the model alone);
- ``e2e``: ``Extractor.embed(paths)`` on person-crop JPEGs (decode/resize in worker threads, overlapped
  with inference on the calling thread: the runtime's pipeline);
- ``serial``: the same work without overlap (decode a batch, then infer it), to show what overlap buys;
- ``frames``: ``Extractor`` units of 1280x720 JPEG frames with 8 boxes each (decode once, crop 8).

Throughputs are images (crops) per second; the ratio e2e / infer is computed per round, then the median
and spread over rounds are reported. Writes ``<out>/<tag>.json`` and ``<tag>.md``.

    python benchmarks/runtime/e2e_throughput.py                  # full run, results in benchmarks/runtime/results/
    python benchmarks/runtime/e2e_throughput.py --quick          # smoke run
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from han_deploy.bench.machine import load_snapshot, machine_record
from han_deploy.contract.decode import read_image
from han_deploy.contract.preprocess import normalize_batch, resize_crop
from han_deploy.runtime.backends import load_backend
from han_deploy.runtime.extractor import Extractor, Unit, image_units

_XYWH = [(40, 100, 90, 250), (200, 80, 110, 300), (420, 150, 80, 220), (600, 60, 120, 360)]
_XYWH += [(800, 200, 70, 200), (950, 90, 100, 320), (1100, 300, 90, 260), (300, 400, 100, 300)]
FRAME_BOXES = [(x, y, x + w, y + h) for x, y, w, h in _XYWH]  # 8 pedestrians per 1280x720 frame


def make_data(folder: Path, n_crops: int, n_frames: int) -> tuple[list[Path], list[Path]]:
    """Person-crop JPEGs (synthetic generator, varied detection sizes) and 1280x720 frame JPEGs."""
    from han_deploy.data.synth import sample_crops

    crops = sample_crops(min(n_crops, 256), seed=0)
    paths = []
    for i in range(n_crops):
        p = folder / f"crop{i:05d}.jpg"
        cv2.imwrite(str(p), crops[i % len(crops)], [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(p)
    frames = []
    rng = np.random.default_rng(0)
    for i in range(n_frames):
        frame = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), (0, 0), 3)
        for (x1, y1, x2, y2), crop in zip(FRAME_BOXES, crops[i % 8 :], strict=False):
            frame[y1:y2, x1:x2] = cv2.resize(crop, (x2 - x1, y2 - y1))
        p = folder / f"frame{i:04d}.jpg"
        cv2.imwrite(str(p), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        frames.append(p)
    return paths, frames


def timed(fn: Any) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds of this process (all its threads) spent in ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run_variant(onnx: Path, crops: list[Path], frames: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    backend = load_backend(onnx, threads=args.threads, spinning=args.spinning)
    ex = Extractor(backend, batch_size=args.batch, workers=args.workers)
    pre = backend.config.preprocess
    batches = [normalize_batch(np.stack([resize_crop(read_image(p), pre) for p in crops[i : i + args.batch]]), pre)
               for i in range(0, len(crops), args.batch)]  # fmt: skip
    frame_units = [Unit(i * 8, [str(f)] * 8, lambda f=f: read_image(f), FRAME_BOXES) for i, f in enumerate(frames)]

    def infer() -> None:
        for b in batches:
            backend.infer(b)

    def e2e() -> None:
        for _ in ex.iter_batches(image_units(crops)):
            pass

    def serial() -> None:
        for i in range(0, len(crops), args.batch):
            backend.infer(normalize_batch(np.stack([resize_crop(read_image(p), pre) for p in crops[i : i + args.batch]]), pre))

    def frames_e2e() -> None:
        for _ in ex.iter_batches(frame_units):
            pass

    cases = {
        "infer": (infer, len(crops)),
        "e2e": (e2e, len(crops)),
        "serial": (serial, len(crops)),
        "frames": (frames_e2e, 8 * len(frames)),
    }
    for fn, _ in cases.values():  # warm-up: sessions, thread pools, page cache
        fn()
    rates: dict[str, list[float]] = {k: [] for k in cases}
    cpu_rates: dict[str, list[float]] = {k: [] for k in cases}  # images per CPU-second
    for r in range(args.rounds):
        order = list(cases) if r % 2 == 0 else list(cases)[::-1]  # alternate the order against drift
        for name in order:
            fn, n = cases[name]
            wall, cpu = timed(fn)
            rates[name].append(n / wall)
            cpu_rates[name].append(n / cpu)
    ex.close()
    out: dict[str, Any] = {"rates": rates, "cpu_rates": cpu_rates}
    for name, vals in rates.items():
        out[name] = _stats(vals)
    for name in ("e2e", "serial", "frames"):
        out[f"{name}_over_infer"] = _stats([a / b for a, b in zip(rates[name], rates["infer"], strict=True)])
        out[f"{name}_cpu_over_infer"] = _stats([a / b for a, b in zip(cpu_rates[name], cpu_rates["infer"], strict=True)])
    out["infer_cpu"] = _stats(cpu_rates["infer"])
    return out


def _stats(vals: list[float]) -> dict[str, float]:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def _cell(r: dict[str, float], percent: bool = False) -> str:
    k = 100.0 if percent else 1.0
    unit = "%" if percent else ""
    return f"{k * r['median']:.0f}{unit} [{k * r['min']:.0f}, {k * r['max']:.0f}]"


COLUMNS = [
    ("inference alone (img/s)", "infer", False),
    ("end to end, overlapped (img/s)", "e2e", False),
    ("e2e / infer", "e2e_over_infer", True),
    ("serial decode-then-infer (img/s)", "serial", False),
    ("serial / infer", "serial_over_infer", True),
    ("frames+boxes (crops/s)", "frames", False),
    ("frames / infer", "frames_over_infer", True),
]
CPU_COLUMNS = [
    ("inference alone (img per CPU-s)", "infer_cpu", False),
    ("e2e / infer, per CPU-s", "e2e_cpu_over_infer", True),
    ("serial / infer, per CPU-s", "serial_cpu_over_infer", True),
    ("frames / infer, per CPU-s", "frames_cpu_over_infer", True),
]


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    cpu, before, after = meta["machine"]["cpu"], meta["load_before"], meta["load_after"]
    lines = [
        f"# End-to-end extraction vs inference alone ({meta['tag']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {cpu.get('model', '?')}, {cpu.get('usable_cpus', '?')} usable CPUs (shared with other users); "
        f"load average (1/5/15 min) before {before['loadavg_1_5_15']}, after {after['loadavg_1_5_15']}  ",
        f"ONNX Runtime {meta['machine']['versions'].get('onnxruntime')}, FP32, CPU EP, batch {meta['batch']}, "
        f"{meta['threads']} intra-op threads, allow_spinning={meta['spinning']}, {meta['workers']} decode threads, "
        f"{meta['crops']} crop JPEGs, {meta['frames']} 1280x720 frames x 8 boxes; {meta['rounds']} rounds: median [min, max]",
        "",
        "| variant | " + " | ".join(c[0] for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for v, r in results.items():
        lines.append(f"| {v} | " + " | ".join(_cell(r[key], pct) for _, key, pct in COLUMNS) + " |")
    lines += [
        "",
        "CPU cost (process CPU time of all threads; robust to other users' load): images per CPU-second, and the",
        "e2e/infer ratio of that, i.e. the share of inference throughput end to end keeps when the cores are the limit.",
        "",
        "| variant | " + " | ".join(c[0] for c in CPU_COLUMNS) + " |",
        "|---" * (len(CPU_COLUMNS) + 1) + "|",
    ]
    for v, r in results.items():
        lines.append(f"| {v} | " + " | ".join(_cell(r[key], pct) for _, key, pct in CPU_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["small", "medium", "large"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crops", type=int, default=640, help="crop JPEGs per timed pass (default 640 = 20 batches)")
    p.add_argument("--frames", type=int, default=40, help="1280x720 frames per timed pass (8 boxes each)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--workers", type=int, default=2, help="decode/crop threads")
    p.add_argument("--spinning", type=int, choices=[0, 1], default=0, help="ONNX Runtime session.intra_op.allow_spinning")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--tag", default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: small variant, few images, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.variants, args.crops, args.frames, args.rounds = ["small"], 64, 4, 1
    import torch

    from han_deploy.export import export_onnx
    from han_deploy.model import create_model

    tag = args.tag or time.strftime("e2e-%Y%m%dT%H%MZ", time.gmtime())
    meta: dict[str, Any] = {
        "tag": tag,
        "command": shlex.join([sys.executable.split("/")[-1], *sys.argv]),
        "machine": machine_record(),
    }
    meta.update({k: getattr(args, k) for k in ("batch", "crops", "frames", "rounds", "threads", "workers", "spinning")})
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        crops, frames = make_data(tmpd, args.crops, args.frames)
        models = {}
        for v in args.variants:
            torch.manual_seed(0)
            models[v] = export_onnx(create_model(v).eval(), tmpd / f"han_{v}.onnx")
        del torch
        meta["load_before"] = load_snapshot()
        for v in args.variants:
            results[v] = run_variant(models[v], crops, frames, args)
            r = results[v]
            print(v, " ".join(f"{key}={_cell(r[key], pct)}" for _, key, pct in COLUMNS + CPU_COLUMNS), flush=True)
        meta["load_after"] = load_snapshot()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{tag}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (args.out / f"{tag}.md").write_text(markdown(results, meta))
    print(markdown(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
