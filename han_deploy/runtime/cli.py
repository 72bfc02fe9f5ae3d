"""``han-extract`` (batch embedding extraction) and ``han-search`` (gallery search) command lines."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .backends import ModelFileError, sha256_file
from .extractor import BatchResult, Extractor, ItemError
from .sources import InputError, Source, plan_inputs, plan_units
from .writers import ResumeError, ShardedRun, check_output, errors_path, parts_dir, write_errors, write_table


class Progress:
    """tqdm when installed (it is optional for the runtime), else a plain line on stderr now and then."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.total, self.n, self.enabled = total, initial, enabled
        self._bar = None
        self._last = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, initial=initial, unit="row", desc="han-extract", dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and (time.monotonic() - self._last > 2 or self.n == self.total):
            self._last = time.monotonic()
            print(f"han-extract: {self.n}/{self.total} rows", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _digest(values: list[str]) -> str:
    h = hashlib.sha256()
    for v in values:
        h.update(v.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def plan_columns(sources: list[Source]) -> dict[str, np.ndarray]:
    """Per-row metadata of the whole plan: source name, frame (-1 for files), box (NaN), track id (-1)."""
    names, frames, boxes, tids = [], [], [], []
    for src in sources:
        names.extend(src.sources)
        if src.kind == "images":
            frames.extend([-1] * src.rows)
            boxes.extend([(np.nan,) * 4] * src.rows)
            tids.extend([-1] * src.rows)
        else:
            frames.extend(src.frames)
            boxes.extend(src.boxes)
            tids.extend(src.track_ids)
    return {
        "sources": np.asarray(names, dtype=str),
        "frames": np.asarray(frames, dtype=np.int64),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "track_ids": np.asarray(tids, dtype=np.int64),
    }


def extract(
    model: str | Path,
    inputs: list[str],
    out: str | Path,
    detections: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 32,
    shard_rows: int = 4096,
    progress: bool = True,
    on_batch: Callable[[BatchResult], None] | None = None,
    **extractor_options: Any,
) -> dict[str, Any]:
    """What ``han-extract`` does, as a function: returns a summary (rows, embedded, failed, paths).

    ``on_batch`` is called after each batch is handed to the shard writer (tests use it to interrupt).
    """
    out = Path(out)
    check_output(out)
    if out.exists() and not overwrite and not resume:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if parts_dir(out).exists() and not resume and not overwrite:
        raise FileExistsError(
            f"{parts_dir(out)} holds an interrupted run: pass --resume to continue it or --overwrite to discard it"
        )
    if resume and out.exists() and not parts_dir(out).exists():
        return {"rows": None, "out": str(out), "note": f"{out} is already complete; nothing to resume"}
    sources = plan_inputs(inputs, detections)
    columns = plan_columns(sources)
    total = len(columns["sources"])
    model = Path(model)
    extractor = Extractor(model, batch_size=batch_size, **extractor_options)
    fingerprint = {
        "inputs": [str(Path(i).resolve()) for i in inputs],
        "rows": total,
        "rows_sha256": _digest(columns["sources"].tolist()),
        "model_sha256": sha256_file(model),
    }
    run = ShardedRun(out, fingerprint, resume=resume, shard_rows=shard_rows)
    start = run.done_rows
    bar = Progress(total, start, progress)
    try:
        with extractor:
            for batch in extractor.iter_batches(plan_units(sources, start)):
                run.add(batch)
                bar.update(batch.stop - batch.start)
                if on_batch is not None:
                    on_batch(batch)
        run.flush()
    finally:
        bar.close()
    rows, emb, errs = run.gather()
    err_rows = np.asarray([r for r, _ in errs], dtype=np.int64)
    accounted = np.concatenate([rows, err_rows])
    if len(accounted) != total or not np.array_equal(np.sort(accounted), np.arange(total)):
        raise RuntimeError(
            f"internal error: {len(accounted)} rows accounted for, {total} expected; {run.dir} kept for inspection"
        )
    table = {k: v[rows] for k, v in columns.items()}
    table["embeddings"] = emb
    table["rows"] = rows
    contract = extractor.backend.contract
    meta = {"contract": json.dumps(contract, sort_keys=True, default=str), "model": str(model)}
    write_table(out, table, meta)
    failures = [ItemError(int(r), str(columns["sources"][r]), reason) for r, reason in sorted(errs)]
    err_file = write_errors(out, failures)
    run.remove()
    return {
        "rows": total,
        "embedded": int(len(rows)),
        "failed": len(failures),
        "resumed_from": start,
        "out": str(out),
        "errors_file": str(err_file) if err_file else None,
    }


def _add_verify_args(p: argparse.ArgumentParser) -> None:
    """``--manifest`` and ``--no-verify``: the model's sha256 is checked against its export manifest before use."""
    p.add_argument(
        "--manifest",
        default=None,
        help="export manifest recording the model's sha256 (default: a manifest.json or MODEL.json beside the model, "
        "when it lists the model); a mismatch is refused",
    )
    p.add_argument("--no-verify", action="store_true", help="load the model without checking its sha256 against the manifest")


def _verify_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_backend`` options of ``--manifest`` / ``--no-verify``."""
    return {"manifest": args.manifest, "verify": not args.no_verify}


def _extract_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-extract",
        description="Extract HAN re-id embeddings from image folders, list files, or videos/MOT sequences with detections. "
        "Torch-free with an ONNX model or TensorRT engine.",
    )
    p.add_argument(
        "model", help="model artifact: .onnx (ONNX Runtime), .engine/.plan/.trt (TensorRT, GPU), .safetensors (PyTorch)"
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image folder (recursive), image file, list file (one path per line, relative to the list), "
        "video (with --detections, or VIDEO.txt next to it), or MOT sequence folder (img1/ + det/det.txt)",
    )
    p.add_argument("--out", required=True, help="output file; the suffix picks the format: .npz, or .parquet (needs pyarrow)")
    p.add_argument(
        "--detections",
        action="append",
        metavar="FILE",
        help="MOT detection file (frame,id,x,y,w,h,...; frames 1-based) for a video input; repeat once per video, in order",
    )
    p.add_argument("--batch-size", type=int, default=32, help="rows per inference batch (default 32)")
    p.add_argument("--workers", type=int, default=None, help="decode/crop threads (default min(4, CPUs))")
    p.add_argument("--threads", type=int, default=None, help="inference threads (ONNX Runtime intra-op; default: the library's)")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: cpu for ONNX/checkpoints, cuda:0 for engines)"
    )
    p.add_argument("--providers", nargs="+", default=None, help="ONNX Runtime execution providers, in order (overrides --device)")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of the same command (no row lost or repeated)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output and discard any interrupted run")
    p.add_argument(
        "--shard-rows", type=int, default=4096, help="rows per checkpointed shard: at most this much work is redone on resume"
    )
    _add_verify_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--fail-on-error", action="store_true", help="exit with status 3 when any input could not be embedded")
    return p


def extract_main(argv: list[str] | None = None) -> int:
    """Entry point of ``han-extract``."""
    args = _extract_parser().parse_args(argv)
    opts: dict[str, Any] = {"device": args.device, "workers": args.workers, **_verify_options(args)}
    if args.threads:
        opts["threads"] = args.threads
    if args.providers:
        opts["providers"] = args.providers
    try:
        summary = extract(
            args.model,
            args.inputs,
            args.out,
            detections=args.detections,
            resume=args.resume,
            overwrite=args.overwrite,
            batch_size=args.batch_size,
            shard_rows=args.shard_rows,
            progress=not args.no_progress,
            **opts,
        )
    except KeyboardInterrupt:
        print(f"han-extract: interrupted; rerun with --resume to continue ({parts_dir(Path(args.out))})", file=sys.stderr)
        return 130
    except (ModelFileError, InputError, ResumeError, FileExistsError, ValueError, RuntimeError) as exc:
        print(f"han-extract: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("note"):
        print(f"han-extract: {summary['note']}", file=sys.stderr)
        return 0
    msg = f"han-extract: {summary['embedded']}/{summary['rows']} rows embedded -> {summary['out']}"
    if summary["failed"]:
        msg += f"; {summary['failed']} failed, reasons in {errors_path(Path(args.out))}"
    print(msg, file=sys.stderr)
    return 3 if summary["failed"] and args.fail_on_error else 0


def _search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-search", description="Find the nearest gallery entries (L2) of query embeddings or images."
    )
    p.add_argument("gallery", help="gallery .npz: a han-extract output or a Gallery.save file")
    p.add_argument(
        "queries",
        nargs="+",
        metavar="QUERY",
        help="a .npz of query embeddings (han-extract output), or image files (need --model)",
    )
    p.add_argument("--top", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument("--model", help="model artifact used to embed query images (the one that built the gallery)")
    p.add_argument("--device", default=None, help="device for --model (cpu, cuda, auto)")
    _add_verify_args(p)
    p.add_argument(
        "--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3) over the whole gallery"
    )
    p.add_argument(
        "--engine", default="auto", choices=["auto", "faiss", "numpy"], help="search engine (default: faiss if installed)"
    )
    p.add_argument("--json", action="store_true", help="print JSON lines (one per query) instead of a table")
    return p


def search_main(argv: list[str] | None = None) -> int:
    """Entry point of ``han-search``."""
    from .gallery import Gallery

    args = _search_parser().parse_args(argv)
    try:
        gallery = Gallery.load(args.gallery, engine=args.engine)
        names: list[str] = []
        feats: list[np.ndarray] = []
        images = [q for q in args.queries if not q.endswith(".npz")]
        for q in args.queries:
            if q.endswith(".npz"):
                with np.load(q, allow_pickle=False) as z:
                    feats.append(z["embeddings"])
                    labels = next((z[k] for k in ("sources", "ids") if k in z.files), range(len(z["embeddings"])))
                    names.extend(f"{q}:{s}" if isinstance(s, int) else str(s) for s in labels)
        if images:
            if not args.model:
                raise ValueError("query images need --model to embed them")
            with Extractor(args.model, device=args.device, **_verify_options(args)) as ex:
                res = ex.embed(images, errors="collect")
            for e in res.errors:
                print(f"han-search: skipped query {e.source}: {e.reason}", file=sys.stderr)
            emb, idx = res.valid()
            feats.append(emb)
            names.extend(images[i] for i in idx)
        queries = np.concatenate(feats) if feats else np.zeros((0, gallery.dim or 0), np.float32)
        if not len(queries):
            raise ValueError("no query could be embedded")
        result = gallery.search(queries, k=args.top, rerank=args.rerank)
    except (FileNotFoundError, ValueError, KeyError, ModelFileError, RuntimeError) as exc:
        print(f"han-search: error: {exc}", file=sys.stderr)
        return 2
    for qi, name in enumerate(names):
        if args.json:
            hits = [
                {"rank": r + 1, "id": str(i), "index": int(j), "distance": float(d)}
                for r, (i, j, d) in enumerate(zip(result.ids[qi], result.indices[qi], result.distances[qi], strict=True))
            ]
            print(json.dumps({"query": name, "hits": hits}))
        else:
            print(f"query {name}")
            for r, (i, d) in enumerate(zip(result.ids[qi], result.distances[qi], strict=True)):
                print(f"  {r + 1:>3}  {d:8.4f}  {i}")
    return 0
