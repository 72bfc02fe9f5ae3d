#!/usr/bin/env python3
"""Serving benchmark: HAN embeddings through the bundled Triton server on loopback vs. in-process, in one run.

For each concurrency level (default 1, 8, 32) ``C`` client threads each send one crop per request,
back to back, until the level's request count is done (or its time cap passes). Paths, timed
round-robin per level and repeated (``--repeats``), rotating the order each round:

- ``triton-http`` / ``triton-grpc``: the client resizes + normalises the crop (as the local
  Extractor does) and sends a float32 tensor to the ``han_python`` model (python backend, ONNX
  Runtime inside, dynamic batching);
- ``triton-jpeg``: the client sends the JPEG bytes; ``han_jpeg`` decodes, resizes and embeds;
- ``triton-ensemble`` (not in the default ``--paths``): the JPEG bytes to ``han_ensemble_python``
  (``han_preprocess`` then ``han_python``: two python-backend steps; Triton stats of the first step);
- ``in-process``: the same crops through ``StreamingExtractor`` (the runtime's own micro-batcher,
  same max batch and max delay as Triton's dynamic batcher) in this process: no server at all;
- ``in-process-batch`` (reference ceiling, no concurrency): ``Extractor.embed`` on all crops at once.

Requests/s, embeddings/s, p50/p99 latency (pooled over repeats; throughput is the median of the
repeats), Triton's executions and mean batch size from ``/v2/models/NAME/stats`` deltas, and the
overhead of serving = 1 - (Triton embeddings/s) / (in-process embeddings/s) at the same level.
Both sides run ONNX Runtime with ``--threads`` intra-op threads and allow_spinning=0 (client threads
and the server share the CPU). Writes ``<out>/<tag>.json`` and ``<tag>.md``.

    python benchmarks/serving/bench_serving.py                 # han_small, levels 1,8,32, 3 repeats
    python benchmarks/serving/bench_serving.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EMB_TOL = 1e-5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--onnx", type=Path, help="FP32 ONNX to serve (default: export han_<variant> with seed-0 random weights)")
    p.add_argument("--variant", default="small", help="variant exported when --onnx is not given")
    p.add_argument("--concurrency", default="1,8,32", help="comma list of client thread counts")
    p.add_argument("--requests", default="120,320,640", help="requests per level and repeat (comma list, one per level)")
    p.add_argument("--cap-s", type=float, default=20.0, help="time cap per level and path in one repeat (stops early)")
    p.add_argument("--repeats", type=int, default=3, help="rounds over all paths")
    p.add_argument("--paths", default="triton-http,triton-grpc,triton-jpeg,in-process", help="comma list of paths")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (server model and in-process)")
    p.add_argument("--max-batch", type=int, default=32, help="Triton max_batch_size and StreamingExtractor max_batch")
    p.add_argument("--delay-us", type=int, default=2000, help="dynamic batcher max queue delay (also StreamingExtractor's)")
    p.add_argument("--crops", type=int, default=64, help="distinct synthetic crops cycled through")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", help="results folder")
    p.add_argument("--tag", default=None, help="file name stem (default: serving-<UTC date-time>)")
    p.add_argument("--quick", action="store_true", help="smoke run: few requests, 1 repeat")
    args = p.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    counts = [int(n) for n in args.requests.split(",")]
    args.counts = counts if len(counts) == len(args.levels) else [counts[0]] * len(args.levels)
    args.paths = [x for x in args.paths.split(",") if x]
    if args.quick:
        args.counts, args.repeats, args.cap_s = [max(c, 8) for c in args.levels], 1, 5.0
    return args


def closed_loop(
    send: Callable[[int], None], concurrency: int, count: int, cap_s: float, n_items: int
) -> tuple[list[float], float, int]:
    """``concurrency`` threads call ``send(i)`` back to back until ``count`` calls or ``cap_s``; (latencies s, wall s, calls)."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        nonlocal issued
        barrier.wait()
        while True:
            with lock:
                if issued >= count or time.perf_counter() > deadline[0]:
                    return
                i = issued
                issued += 1
            t0 = time.perf_counter()
            try:
                send(i % n_items)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                return
            dt_s = time.perf_counter() - t0
            with lock:
                latencies.append(dt_s)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + cap_s
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed; first: {errors[0]!r}") from errors[0]
    return latencies, wall, len(latencies)


def model_stats(server: Any, model: str) -> dict[str, float]:
    s = server.get_json(f"/v2/models/{model}/stats")["model_stats"][0]
    inf = s["inference_stats"]
    return {
        "requests": inf["success"]["count"],
        "items": s["inference_count"],
        "executions": s["execution_count"],
        **{f"{k}_ns": inf[k]["ns"] for k in ("queue", "compute_input", "compute_infer", "compute_output")},
    }


def summarize(name: str, level: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    lat = np.concatenate([r["latencies"] for r in rounds]) * 1000.0
    rps = [r["calls"] / r["wall"] for r in rounds]
    row: dict[str, Any] = {
        "path": name,
        "concurrency": level,
        "requests": int(sum(r["calls"] for r in rounds)),
        "requests_per_s": float(np.median(rps)),
        "requests_per_s_range": [float(min(rps)), float(max(rps))],
        "embeddings_per_s": float(np.median(rps)),  # one crop per request
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
    }
    deltas = [r["stats"] for r in rounds if r.get("stats")]
    if deltas:
        req = sum(d["requests"] for d in deltas)
        exe = sum(d["executions"] for d in deltas)
        row["triton"] = {
            "executions": int(exe),
            "mean_batch": sum(d["items"] for d in deltas) / max(exe, 1),
            **{
                f"{k}_ms_per_request": sum(d[f"{k}_ns"] for d in deltas) / max(req, 1) / 1e6
                for k in ("queue", "compute_input", "compute_infer", "compute_output")
            },
        }
    return row


def stats_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import cv2

    from han_deploy.bench.machine import load_snapshot, machine_record
    from han_deploy.data.synth import sample_crops
    from han_deploy.runtime import load_backend, preprocess
    from han_deploy.runtime.extractor import Extractor, StreamingExtractor
    from han_deploy.serve.client import TritonBackend, TritonConnection
    from han_deploy.serve.server import TritonServer
    from han_deploy.serve.triton import write_triton_repository

    tag = args.tag or "serving-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%MZ")
    args.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine_record(),
        "load_before": load_snapshot(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    from importlib.metadata import version

    from han_deploy.serve.stub_env import stub_bin_dir

    stub_numpy = list((stub_bin_dir().parent / "lib").glob("python3*/site-packages/numpy-*.dist-info"))
    record["serving_versions"] = {
        "nvidia-pytriton": version("nvidia-pytriton"),
        "tritonserver": "2.51 (bundled in nvidia-pytriton)",
        "tritonclient": version("tritonclient"),
        "stub_numpy": stub_numpy[0].name.removesuffix(".dist-info").split("-")[1] if stub_numpy else "this interpreter's",
    }
    work = Path(tempfile.mkdtemp(prefix="han-serving-bench-"))
    onnx_path = args.onnx
    if onnx_path is None:
        import torch

        from han_deploy.export import export_onnx
        from han_deploy.model import create_model

        torch.manual_seed(0)
        onnx_path = export_onnx(create_model(f"han_{args.variant}").eval(), work / f"han_{args.variant}.onnx")
    crops = sample_crops(args.crops, seed=7)
    jpegs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for c in crops]
    decoded = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in jpegs]
    local = load_backend(onnx_path, threads=args.threads, spinning=False)
    pre = local.config.preprocess
    reference = local.infer(preprocess(crops, pre))
    reference_jpeg = local.infer(preprocess(decoded, pre))

    repo = write_triton_repository(
        work / "repo",
        [onnx_path],
        max_batch_size=args.max_batch,
        preferred_batch_sizes=sorted({b for b in (4, 8, 16, 32, args.max_batch) if b <= args.max_batch}),
        max_queue_delay_us=args.delay_us,
        python_threads=args.threads,
        python_spinning=False,
    )
    results: list[dict[str, Any]] = []
    checks: dict[str, float] = {}
    models = ["han_python", "han_jpeg", "han_preprocess", "han_ensemble_python"]
    server = TritonServer(repo, models=models, startup_timeout_s=180)
    try:
        t0 = time.perf_counter()
        server.start()
        record["server_start_s"] = time.perf_counter() - t0
        http = TritonBackend(server.http_url, "han_python", "http").activate()
        grpc = TritonBackend(server.grpc_url, "han_python", "grpc").activate()
        jpeg = TritonConnection(server.http_url, "han_jpeg", "http")
        ensemble = TritonConnection(server.http_url, "han_ensemble_python", "http")
        streaming = StreamingExtractor(
            Extractor(load_backend(onnx_path, threads=args.threads, spinning=False), batch_size=args.max_batch),
            max_batch=args.max_batch,
            max_latency_ms=args.delay_us / 1000.0,
        )

        def tensor_sender(backend: TritonBackend) -> Callable[[int], np.ndarray]:
            return lambda i: backend.infer(preprocess([crops[i]], pre))[0]

        def bytes_sender(connection: TritonConnection) -> Callable[[int], np.ndarray]:
            def send(i: int) -> np.ndarray:
                data = np.empty((1, 1), dtype=object)
                data[0, 0] = jpegs[i]
                return connection.infer({"encoded": data}, ["embeddings"])["embeddings"][0]

            return send

        senders: dict[str, tuple[Callable[[int], np.ndarray], str | None, np.ndarray]] = {
            "triton-http": (tensor_sender(http), "han_python", reference),
            "triton-grpc": (tensor_sender(grpc), "han_python", reference),
            "triton-jpeg": (bytes_sender(jpeg), "han_jpeg", reference_jpeg),
            "triton-ensemble": (bytes_sender(ensemble), "han_preprocess", reference_jpeg),
            "in-process": (lambda i: streaming.submit(crops[i]).result(), None, reference),
        }
        unknown = set(args.paths) - set(senders)
        if unknown:
            raise SystemExit(f"unknown --paths {sorted(unknown)}; known: {sorted(senders)}")
        for name in args.paths:  # correctness first, and warm every path up
            send, _, ref = senders[name]
            checks[name] = max(float(np.abs(send(i) - ref[i]).max()) for i in range(min(8, len(crops))))
            if checks[name] > EMB_TOL:
                raise SystemExit(f"{name}: embeddings differ from the local runtime by {checks[name]:.2e} > {EMB_TOL}")
            closed_loop(lambda i, s=send: s(i), 4, 16, 10.0, len(crops))

        for level, count in zip(args.levels, args.counts, strict=True):
            rounds: dict[str, list[dict[str, Any]]] = {p: [] for p in args.paths}
            for r in range(args.repeats):
                order = args.paths[r % len(args.paths) :] + args.paths[: r % len(args.paths)]
                for name in order:
                    send, model, _ = senders[name]
                    before = model_stats(server, model) if model else None
                    lat, wall, calls = closed_loop(send, level, count, args.cap_s, len(crops))
                    entry = {"latencies": np.asarray(lat), "wall": wall, "calls": calls}
                    if model:
                        entry["stats"] = stats_delta(before, model_stats(server, model))
                    rounds[name].append(entry)
                    print(f"C={level:>3} {name:<12} round {r + 1}: {calls / wall:7.1f} req/s", flush=True)
            results += [summarize(name, level, rs) for name, rs in rounds.items()]

        with Extractor(load_backend(onnx_path, threads=args.threads, spinning=False), batch_size=args.max_batch) as ex:
            ex.embed(crops)
            walls = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ex.embed(crops)
                walls.append(time.perf_counter() - t0)
            results.append(
                {
                    "path": "in-process-batch",
                    "concurrency": 1,
                    "requests": args.repeats,
                    "embeddings_per_s": len(crops) / float(np.median(walls)),
                    "note": f"Extractor.embed of {len(crops)} crops, batch {args.max_batch}",
                }
            )
        streaming.close()
        http.deactivate()
        grpc.deactivate()
        jpeg.close()
        ensemble.close()
    finally:
        server.stop()
        record["server_log_tail"] = server.final_log[-2000:]
        shutil.rmtree(work, ignore_errors=True)
    record["load_after"] = load_snapshot()
    record["parity_max_abs_diff"] = checks
    record["results"] = results
    record["overhead"] = overhead_table(results)
    (args.out / f"{tag}.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    md = markdown(record)
    (args.out / f"{tag}.md").write_text(md)
    print(md)
    return 0


def overhead_table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level and Triton path: 1 - emb/s ratio and the p50 latency added, against in-process at that level."""
    base = {r["concurrency"]: r for r in results if r["path"] == "in-process"}
    rows = []
    for r in results:
        b = base.get(r["concurrency"])
        if r["path"].startswith("triton") and b:
            rows.append(
                {
                    "path": r["path"],
                    "concurrency": r["concurrency"],
                    "throughput_ratio": r["embeddings_per_s"] / b["embeddings_per_s"],
                    "throughput_loss": 1.0 - r["embeddings_per_s"] / b["embeddings_per_s"],
                    "p50_added_ms": r["p50_ms"] - b["p50_ms"],
                    "p99_added_ms": r["p99_ms"] - b["p99_ms"],
                }
            )
    return rows


def markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    cpu = m["cpu"]
    v = m["versions"]
    lines = [
        f"# Serving benchmark ({record['load_before']['utc']})",
        "",
        f"Command: `{record['command']}`",
        "",
        f"Machine: {cpu['model']}, {cpu['usable_cpus']} usable CPUs; load average (1/5/15 min) before "
        f"{record['load_before']['loadavg_1_5_15']}, after {record['load_after']['loadavg_1_5_15']}. "
        f"Python {v.get('python')}, onnxruntime {v.get('onnxruntime')}, numpy {v.get('numpy')}; "
        + ", ".join(f"{k} {x}" for k, x in record["serving_versions"].items())
        + "; "
        f"server start {record['server_start_s']:.1f} s. Max |Triton - local| on the check crops: "
        + ", ".join(f"{k} {x:.1e}" for k, x in record["parity_max_abs_diff"].items())
        + ".",
        "",
        "| path | C | requests | req/s (= emb/s) | repeats' range | p50 ms | p99 ms | Triton executions | mean batch "
        "| queue ms | compute ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["results"]:
        t = r.get("triton", {})
        lines.append(
            f"| {r['path']} | {r['concurrency']} | {r['requests']} | {r['embeddings_per_s']:.1f} | "
            + ("{:.0f}-{:.0f} | ".format(*r["requests_per_s_range"]) if "requests_per_s_range" in r else "- | ")
            + (f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | " if "p50_ms" in r else "- | - | ")
            + (
                f"{t['executions']} | {t['mean_batch']:.1f} | {t['queue_ms_per_request']:.1f} | "
                f"{t['compute_infer_ms_per_request']:.1f} |"
                if t
                else "- | - | - | - |"
            )
        )
    lines += [
        "",
        "Triton columns from /v2/models/NAME/stats deltas: executions of the model, items per execution, and per request "
        "the mean time queued and the mean compute time of the batch it ran in.",
        "",
        "Overhead of serving (same run, same level): throughput loss = 1 - Triton emb/s / in-process emb/s.",
        "",
        "| path | C | throughput loss | p50 added ms | p99 added ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for o in record["overhead"]:
        loss, p50, p99 = o["throughput_loss"], o["p50_added_ms"], o["p99_added_ms"]
        lines.append(f"| {o['path']} | {o['concurrency']} | {loss:+.0%} | {p50:+.1f} | {p99:+.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
