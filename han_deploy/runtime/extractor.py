"""Embedding extraction: batched (:class:`Extractor`) and streaming micro-batched (:class:`StreamingExtractor`).

Work is described as *units*: one image load that yields one or more *rows* (a whole image, or the
boxes of a frame). Worker threads decode and crop units (OpenCV releases the GIL) while the calling
thread runs the model, so decoding overlaps inference. A bad unit or box fails only its own rows.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..contract.decode import DecodeError, decode_bytes, read_image
from ..contract.preprocess import crop_box, normalize_batch, resize_crop
from .backends import BaseBackend, load_backend

ImageLike = str | os.PathLike | np.ndarray | bytes
Box = Sequence[float]


@dataclass(frozen=True)
class ItemError:
    """One input that could not be embedded: its row index, what it was, and why."""

    index: int
    source: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.index}] {self.source}: {self.reason}"


class ExtractionError(ValueError):
    """Raised in strict mode when any item failed; ``.errors`` lists them and ``.result`` keeps the rest."""

    def __init__(self, errors: list[ItemError], result: EmbedResult | None = None) -> None:
        self.errors = errors
        self.result = result
        shown = "\n  ".join(str(e) for e in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        super().__init__(f"{len(errors)} input(s) could not be embedded:\n  {shown}{more}")


@dataclass
class EmbedResult:
    """Embeddings aligned with the inputs: failed rows are NaN, ``ok`` marks the good ones."""

    embeddings: np.ndarray  # (N, D) float32
    ok: np.ndarray  # (N,) bool
    errors: list[ItemError]

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings of the good rows and their input indices."""
        idx = np.flatnonzero(self.ok)
        return self.embeddings[idx], idx

    def resolve(self, errors: Literal["raise", "collect"]) -> Any:
        """What ``embed(..., errors=...)`` returns: this result (collect), or the array, raising on any failure."""
        if errors == "collect":
            return self
        if self.errors:
            raise ExtractionError(self.errors, self)
        return self.embeddings


@dataclass
class Unit:
    """One image load and the rows it yields: the whole image (``boxes is None``) or one row per box."""

    first_row: int
    sources: list[str]
    load: Callable[[], np.ndarray]
    boxes: Sequence[Box] | None = None

    @property
    def rows(self) -> int:
        return len(self.sources)


@dataclass
class BatchResult:
    """The outcome of rows ``[start, stop)``: embeddings of the good rows (``rows``) and errors of the others."""

    start: int
    stop: int
    rows: np.ndarray  # (M,) int64 row indices, ascending
    embeddings: np.ndarray  # (M, D) float32
    errors: list[ItemError] = field(default_factory=list)


def describe(item: Any) -> str:
    """A short human name for an input item, for error messages and ``sources``."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, np.ndarray):
        return f"array{tuple(item.shape)}:{item.dtype}"
    if isinstance(item, bytes):
        return f"bytes[{len(item)}]"
    return type(item).__name__


def format_box(box: Box) -> str:
    """``x1,y1,x2,y2`` with short numbers, as written in ``sources``."""
    return ",".join(f"{float(v):g}" for v in box)


def _reason(exc: Exception, source: str) -> str:
    """The exception's message without a leading repeat of the source name."""
    msg = str(exc)
    for prefix in (f"{source}: ", f"{source.split(':box=')[0]}: "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def loader_for(item: ImageLike) -> Callable[[], np.ndarray]:
    """A function returning ``item`` as an image array: a path is read, bytes are decoded, arrays pass through."""
    if isinstance(item, (str, os.PathLike)):
        return lambda: read_image(item)
    if isinstance(item, bytes):
        return lambda: decode_bytes(item)
    if isinstance(item, np.ndarray):
        return lambda: item
    raise TypeError(f"cannot embed an item of type {type(item).__name__}: expected a path, bytes or an image array")


def image_units(items: Iterable[ImageLike], first_row: int = 0) -> Iterator[Unit]:
    """One unit (one row) per image path, encoded bytes or array."""
    for i, item in enumerate(items, first_row):
        try:
            load = loader_for(item)
        except TypeError as exc:
            load = _raiser(exc)
        yield Unit(i, [describe(item)], load)


def _raiser(exc: Exception) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise exc

    return load


def prepare_unit(unit: Unit, pre: Any) -> list[np.ndarray | str]:
    """Decode/crop/resize one unit: per row either the model-size uint8 crop or the reason it failed."""
    try:
        image = unit.load()
    except (DecodeError, OSError, ValueError, TypeError) as exc:
        return [_reason(exc, unit.sources[0])] * unit.rows
    out: list[np.ndarray | str] = []
    boxes = unit.boxes if unit.boxes is not None else [None] * unit.rows
    for box in boxes:
        try:
            crop = image if box is None else crop_box(image, box)
            out.append(resize_crop(crop, pre))
        except (ValueError, TypeError) as exc:
            out.append(f"bad {'image' if box is None else 'box'}: {exc}")
        except Exception as exc:  # cv2.error and the like: still one row's problem only
            out.append(f"cannot preprocess: {type(exc).__name__}: {exc}")
    return out


class Extractor:
    """Batch embedding extraction from images, paths or frames plus boxes, with any backend.

    ``Extractor("han_small.onnx").embed(paths)`` -> (N, D) float32. ``errors="collect"`` returns an
    :class:`EmbedResult` instead of raising :class:`ExtractionError` when some inputs are bad.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | BaseBackend,
        device: str | None = None,
        batch_size: int = 32,
        workers: int | None = None,
        prefetch_batches: int = 2,
        **backend_options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # a backend passed in is owned from now on: activated here (if it is not), deactivated by close()
        backend = model if isinstance(model, BaseBackend) else load_backend(model, device=device, **backend_options)
        self.backend = backend.activate()
        self.config = self.backend.config
        self.pre = self.config.preprocess
        self.dim = self.config.embedding_dim
        self.batch_size = batch_size
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.prefetch_rows = max(1, prefetch_batches) * batch_size
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="han-decode")
        return self._pool

    def infer_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Model-size uint8 crops (from :func:`resize_crop`) -> (N, D) embeddings."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.backend.infer(normalize_batch(np.stack(crops), self.pre))

    def iter_batches(self, units: Iterable[Unit]) -> Iterator[BatchResult]:
        """Run ``units`` through the pipeline, yielding results for consecutive row ranges in order.

        Up to ``prefetch_batches`` batches of rows are being decoded in worker threads while the model
        runs on the current batch.
        """
        units = iter(units)
        pending: deque[tuple[Unit, Future[list[np.ndarray | str]]]] = deque()
        in_flight = 0
        exhausted = False

        def top_up() -> None:
            nonlocal in_flight, exhausted
            while not exhausted and in_flight < self.prefetch_rows:
                unit = next(units, None)
                if unit is None:
                    exhausted = True
                    return
                pending.append((unit, self.pool.submit(prepare_unit, unit, self.pre)))
                in_flight += unit.rows

        rows: list[int] = []
        crops: list[np.ndarray] = []
        errors: list[ItemError] = []
        start = None
        top_up()
        while pending:
            unit, fut = pending.popleft()
            in_flight -= unit.rows
            top_up()
            start = unit.first_row if start is None else start
            for j, res in enumerate(fut.result()):
                row = unit.first_row + j
                if isinstance(res, str):
                    errors.append(ItemError(row, unit.sources[j], res))
                else:
                    rows.append(row)
                    crops.append(res)
                if len(crops) == self.batch_size:
                    yield self._emit(start, row + 1, rows, crops, errors)
                    rows, crops, errors, start = [], [], [], row + 1
            if start is not None and start < unit.first_row + unit.rows and not pending:
                yield self._emit(start, unit.first_row + unit.rows, rows, crops, errors)
                rows, crops, errors, start = [], [], [], None

    def _emit(self, start: int, stop: int, rows: list[int], crops: list[np.ndarray], errors: list[ItemError]) -> BatchResult:
        emb = self.infer_crops(crops)
        return BatchResult(start, stop, np.asarray(rows, dtype=np.int64), emb, errors)

    def _collect(self, units: list[Unit], n: int, errors: Literal["raise", "collect"]) -> np.ndarray | EmbedResult:
        if errors not in ("raise", "collect"):
            raise ValueError(f"errors must be 'raise' or 'collect', got {errors!r}")
        out = np.full((n, self.dim), np.nan, dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        errs: list[ItemError] = []
        for batch in self.iter_batches(units):
            out[batch.rows] = batch.embeddings
            ok[batch.rows] = True
            errs.extend(batch.errors)
        return EmbedResult(out, ok, errs).resolve(errors)

    def embed(self, images: Iterable[ImageLike], errors: Literal["raise", "collect"] = "raise") -> Any:
        """Images (paths, encoded bytes or arrays: BGR/gray/BGRA, uint8/uint16/float) -> (N, D) float32.

        ``errors="raise"``: raise :class:`ExtractionError` naming every bad input (``.result`` keeps the
        others' embeddings); ``errors="collect"``: return an :class:`EmbedResult`.
        """
        units = list(image_units(images))
        return self._collect(units, len(units), errors)

    def embed_crops(self, frame: ImageLike, boxes: Any, errors: Literal["raise", "collect"] = "raise") -> Any:
        """The crops of ``frame`` (path, bytes or array) under ``xyxy`` boxes (K x 4) -> (K, D) float32."""
        boxes = [tuple(b) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]
        name = describe(frame)
        sources = [f"{name}:box={format_box(b)}" for b in boxes]
        try:
            load = loader_for(frame)
        except TypeError as exc:
            load = _raiser(exc)
        return self._collect([Unit(0, sources, load, boxes)], len(boxes), errors)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.backend.deactivate()

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamingExtractor:
    """Micro-batching for many camera streams: ``submit`` returns a Future of one (D,) embedding.

    Decoding and cropping run in ``workers`` threads; one batcher thread gathers ready crops and runs
    the model when ``max_batch`` crops are ready or the oldest waiting item was submitted
    ``max_latency_ms`` ago, whichever comes first. Bad items fail their own Future with an
    :class:`ItemError`-style ``ValueError``; the rest of the batch is unaffected.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | BaseBackend | Extractor,
        max_batch: int = 32,
        max_latency_ms: float = 20.0,
        workers: int | None = None,
        device: str | None = None,
        **backend_options: Any,
    ) -> None:
        if isinstance(model, Extractor):
            self.extractor = model
        else:
            self.extractor = Extractor(model, device=device, batch_size=max_batch, workers=workers, **backend_options)
        self.max_batch = max_batch
        self.max_latency = max_latency_ms / 1000.0
        self._ready: queue.Queue[tuple[float, np.ndarray, Future[np.ndarray]] | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Condition()
        self._outstanding = 0
        self.batch_sizes: list[int] = []  # sizes of the batches run so far, for monitoring
        self._thread = threading.Thread(target=self._batcher, name="han-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: ImageLike) -> Future[np.ndarray]:
        """Queue one image (path, bytes or array); the Future resolves to its (D,) embedding."""
        return self._submit_unit(Unit(0, [describe(image)], loader_for(image)))[0]

    def submit_crops(self, frame: ImageLike, boxes: Any) -> list[Future[np.ndarray]]:
        """Queue the boxes (``xyxy``) of one frame; the frame is decoded once. One Future per box."""
        boxes = [tuple(b) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]
        name = describe(frame)
        return self._submit_unit(Unit(0, [f"{name}:box={format_box(b)}" for b in boxes], loader_for(frame), boxes))

    def _submit_unit(self, unit: Unit) -> list[Future[np.ndarray]]:
        with self._lock:
            if self._closed:
                raise RuntimeError("StreamingExtractor is closed")
            self._outstanding += unit.rows
        t0 = time.monotonic()
        futures: list[Future[np.ndarray]] = [Future() for _ in range(unit.rows)]
        task = self.extractor.pool.submit(prepare_unit, unit, self.extractor.pre)
        task.add_done_callback(lambda f: self._prepared(unit, t0, f, futures))
        return futures

    def _prepared(self, unit: Unit, t0: float, task: Future[list[np.ndarray | str]], futures: list[Future[np.ndarray]]) -> None:
        try:
            results: list[np.ndarray | str] = task.result()
        except Exception as exc:  # prepare_unit catches item errors; anything else still fails only this unit
            results = [f"{type(exc).__name__}: {exc}"] * unit.rows
        for source, res, fut in zip(unit.sources, results, futures, strict=True):
            if isinstance(res, str):
                fut.set_exception(ValueError(f"{source}: {res}"))
                self._done(1)
            else:
                self._ready.put((t0, res, fut))

    def _done(self, n: int) -> None:
        with self._lock:
            self._outstanding -= n
            if self._outstanding == 0:
                self._lock.notify_all()

    def _batcher(self) -> None:
        while True:
            first = self._ready.get()
            if first is None:
                return
            batch = [first]
            deadline = first[0] + self.max_latency
            while len(batch) < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    item = self._ready.get(timeout=max(timeout, 0)) if timeout > 0 else self._ready.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._ready.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[tuple[float, np.ndarray, Future[np.ndarray]]]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            emb = self.extractor.infer_crops([crop for _, crop, _ in batch])
        except Exception as exc:
            for _, _, fut in batch:
                fut.set_exception(exc)
        else:
            for (_, _, fut), e in zip(batch, emb, strict=True):
                fut.set_result(e)
        self._done(len(batch))

    def close(self) -> None:
        """Finish everything submitted, then stop the threads and release the model."""
        with self._lock:
            self._closed = True
            self._lock.wait_for(lambda: self._outstanding == 0)
        self._ready.put(None)
        self._thread.join()
        self.extractor.close()

    def __enter__(self) -> StreamingExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BatchResult",
    "EmbedResult",
    "ExtractionError",
    "Extractor",
    "ItemError",
    "StreamingExtractor",
    "Unit",
    "image_units",
    "prepare_unit",
]
