"""Inputs of ``han-extract`` as numbered rows: image folders, list files, videos or MOT sequences plus detections.

Planning lists every row up front (so progress, resume and accounting are exact); ``units(start)``
then yields the work from row ``start`` on, in the same deterministic order every time.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from ..contract.decode import IMAGE_SUFFIXES, DecodeError, image_files, read_image
from .extractor import Unit, format_box

# a generator that is sent the frame number wanted and yields a loader for that frame (primed with None)
FrameLoaders = Generator[Callable[[], np.ndarray] | None, int | None, None]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


class InputError(ValueError):
    """An input argument that cannot be planned (missing path, unknown kind, video without detections)."""


@dataclass
class Detection:
    """One MOT row: 1-based frame, track id, ``xyxy`` box, score; ``error`` when the line was malformed."""

    frame: int
    track_id: int
    box: tuple[float, float, float, float]
    score: float = float("nan")
    error: str | None = None
    where: str = ""  # "FILE line N" of a malformed row


def parse_mot(path: str | os.PathLike[str]) -> list[Detection]:
    """Read a MOT-format file (``frame,id,x,y,w,h[,score,...]``, comma or space separated), sorted by frame.

    Malformed lines are kept as rows with an ``error`` so that every line is accounted for.
    """
    dets: list[Detection] = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = [p for p in text.replace(",", " ").split() if p]
        try:
            frame, tid = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            score = float(parts[6]) if len(parts) > 6 else float("nan")
        except (ValueError, IndexError):
            where = f"{path} line {lineno}"
            dets.append(Detection(-1, -1, (np.nan,) * 4, error=f"{where}: malformed MOT row {text[:60]!r}", where=where))
            continue
        dets.append(Detection(frame, tid, (x, y, x + w, y + h), score))
    dets.sort(key=lambda d: d.frame)  # stable: file order within a frame
    return dets


@dataclass
class Source:
    """Rows of one input: ``sources``/``frames``/``boxes``/``track_ids`` per row, and how to make units."""

    name: str
    kind: str  # "images" | "video" | "sequence"
    sources: list[str]
    frames: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    track_ids: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # kind == "images"
    detections: list[Detection] = field(default_factory=list)  # kind == "video" | "sequence"
    frame_pattern: str = ""  # kind == "sequence": image path with {frame}

    @property
    def rows(self) -> int:
        return len(self.sources)

    def units(self, first_row: int, skip: int = 0) -> Iterator[Unit]:
        """Units for rows ``skip..rows-1`` of this source, numbered from ``first_row + skip``."""
        if self.kind == "images":
            for i in range(skip, self.rows):
                path = self.files[i]
                yield Unit(first_row + i, [self.sources[i]], partial(read_image, path))
        elif self.kind == "sequence":
            yield from self._frame_units(first_row, skip, self._sequence_frames())
        else:
            yield from _threaded(self._frame_units(first_row, skip, self._video_frames()), maxsize=8)

    def _frame_units(self, first_row: int, skip: int, frames: FrameLoaders) -> Iterator[Unit]:
        """Group detection rows by frame; ``frames`` is a generator that receives the frame number wanted
        (or None to skip it cheaply) and yields a loader."""
        groups: dict[int, list[int]] = {}
        for i, det in enumerate(self.detections):
            if i >= skip:
                groups.setdefault(det.frame, []).append(i)
        next(frames)  # prime
        for frame in sorted(groups):
            rows = groups[frame]
            load = frames.send(frame)
            assert load is not None  # the generators yield None only when primed
            runs = _split_runs(rows)
            for run in runs:
                bad = [i for i in run if self.detections[i].error]
                if bad:  # malformed lines: their own units that fail with the parse error
                    for i in run:
                        err = self.detections[i].error
                        if err:
                            yield Unit(first_row + i, [self.sources[i]], _fail(err))
                        else:
                            yield Unit(first_row + i, [self.sources[i]], load, [self.detections[i].box])
                else:
                    yield Unit(first_row + run[0], [self.sources[i] for i in run], load, [self.detections[i].box for i in run])
        frames.close()

    def _sequence_frames(self) -> FrameLoaders:
        frame = yield None
        while True:
            path = self.frame_pattern.format(frame=frame)
            frame = yield partial(read_image, path)

    def _video_frames(self) -> FrameLoaders:
        """Decode the video sequentially: ``grab`` frames nobody wants, ``retrieve`` the wanted ones once."""
        cap = cv2.VideoCapture(self.name)
        opened = cap.isOpened()
        current = 0  # frames consumed so far; MOT frames are 1-based
        try:
            wanted = yield None
            while True:
                if not opened:
                    wanted = yield _fail(f"cannot open video {self.name}")
                    continue
                if wanted is None or wanted < 1 or wanted <= current:
                    wanted = yield _fail(f"frame {wanted} is not in the video (MOT frames start at 1)")
                    continue
                ok = True
                while ok and current < wanted - 1:
                    ok = cap.grab()
                    current += ok
                image = cap.read()[1] if ok else None
                if image is None:
                    wanted = yield _fail(f"frame {wanted} is beyond the end of the video ({current} frames)")
                    continue
                current += 1
                wanted = yield partial(_same, image)
        finally:
            cap.release()


def _split_runs(rows: list[int]) -> list[list[int]]:
    """Consecutive row numbers grouped (a frame's rows are consecutive after the sort, except at a resume)."""
    runs: list[list[int]] = []
    for r in rows:
        if runs and runs[-1][-1] == r - 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def _same(image: np.ndarray) -> np.ndarray:
    return image


def _fail(reason: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        raise DecodeError(reason)

    return load


def _threaded(gen: Iterator[Unit], maxsize: int) -> Iterator[Unit]:
    """Run a generator in a background thread (video decoding) so the caller's model runs meanwhile."""
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # re-raised in the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=work, name="han-video", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()


def _read_list(path: Path) -> list[str]:
    """A list file: one image path per line, relative to the list file's folder; blank and # lines skipped."""
    out = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            p = Path(text.split()[0])
            out.append(str(p if p.is_absolute() else path.parent / p))
    return out


def _detection_source(name: str, kind: str, dets: list[Detection], pattern: str = "") -> Source:
    src = [f"{name}:{d.where}" if d.error else f"{name}:{d.frame}:{format_box(d.box)}" for d in dets]
    frames, boxes, tids = [d.frame for d in dets], [d.box for d in dets], [d.track_id for d in dets]
    return Source(name, kind, src, frames, boxes, tids, detections=dets, frame_pattern=pattern)


def _sequence_dir(path: Path) -> bool:
    return (path / "img1").is_dir() and (path / "det" / "det.txt").is_file()


def plan_inputs(inputs: list[str], detections: list[str] | None = None) -> list[Source]:
    """Turn ``han-extract``'s inputs into sources, every row listed.

    An input is an image folder (searched recursively), a MOT sequence folder (``img1/`` +
    ``det/det.txt``), a video (paired in order with ``detections``, else ``VIDEO.txt`` / ``VIDEO.det.txt``
    next to it), an image file, or a list file (one image path per line).
    """
    dets = list(detections or [])
    sources: list[Source] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            if _sequence_dir(path):
                frames = sorted((path / "img1").iterdir())
                ext = frames[0].suffix if frames else ".jpg"
                pattern = str(path / "img1" / ("{frame:06d}" + ext))
                sources.append(_detection_source(str(path), "sequence", parse_mot(path / "det" / "det.txt"), pattern))
            else:
                files = [str(p) for p in image_files(path, recursive=True)]
                sources.append(Source(str(path), "images", files, files=files))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            if dets:
                det = Path(dets.pop(0))
            else:
                found = [c for c in (path.with_suffix(".txt"), path.with_name(path.name + ".det.txt")) if c.is_file()]
                if not found:
                    raise InputError(f"video {path} needs a MOT detection file: pass --detections FILE (frame,id,x,y,w,h,...)")
                det = found[0]
            if not det.is_file():
                raise InputError(f"detection file not found: {det} (for video {path})")
            if not path.is_file():
                raise InputError(f"video not found: {path}")
            sources.append(_detection_source(str(path), "video", parse_mot(det)))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(Source(str(path), "images", [str(path)], files=[str(path)]))  # checked when read
        elif path.is_file():
            files = _read_list(path)
            sources.append(Source(str(path), "images", files, files=files))
        else:
            raise InputError(f"input not found: {path}")
    if dets:
        raise InputError(f"{len(dets)} --detections file(s) left over with no video to pair with: {', '.join(dets)}")
    return sources


def plan_units(sources: list[Source], start: int = 0) -> Iterator[Unit]:
    """All units of the plan from global row ``start`` on."""
    first = 0
    for src in sources:
        if start < first + src.rows:
            yield from src.units(first, max(0, start - first))
        first += src.rows
