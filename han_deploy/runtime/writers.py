"""Output of ``han-extract``: atomic ``.npz`` / ``.parquet`` files, an errors file, and resumable shards.

While a run is in progress its results go to ``OUT.parts/``: numbered shard files, each written
atomically, and ``journal.jsonl``, to which a line is appended (and fsynced) only after its shard is
safely on disk. ``--resume`` reads the journal, checks the run is the same (inputs and model), and
continues at the first row no shard covers, so no row is lost or written twice. The final file is
assembled from the shards, written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .extractor import BatchResult, ItemError

FORMATS = (".npz", ".parquet")


class ResumeError(RuntimeError):
    """An interrupted run cannot be resumed (different inputs or model, or damaged shards)."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Any], None]) -> Path:
    """Call ``write(file)`` on ``PATH.tmp``, fsync, and rename it over ``path``: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def pyarrow_available() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def check_output(out: Path) -> None:
    """Refuse an output suffix we cannot write, before any work is done."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--out {out}: unknown format {suffix or '(no suffix)'!r}; use .npz or .parquet")
    if suffix == ".parquet" and not pyarrow_available():
        raise ValueError(f"--out {out}: writing parquet needs pyarrow (pip install pyarrow), or use .npz")


class ShardedRun:
    """The on-disk state of one extraction run: shards + journal under ``OUT.parts/``."""

    def __init__(self, out: Path, fingerprint: dict[str, Any], resume: bool, shard_rows: int = 4096) -> None:
        self.out = Path(out)
        self.dir = parts_dir(self.out)
        self.journal = self.dir / "journal.jsonl"
        self.fingerprint = fingerprint
        self.shard_rows = shard_rows
        self.shards: list[dict[str, Any]] = []
        self._buffer: list[BatchResult] = []
        if resume and self.journal.is_file():
            self._load()
        else:
            if self.dir.exists():
                shutil.rmtree(self.dir)
            self.dir.mkdir(parents=True)
            self._append({"fingerprint": fingerprint})

    @property
    def done_rows(self) -> int:
        """Rows covered by shards on disk: the run continues from here."""
        return self.shards[-1]["stop"] if self.shards else 0

    def _load(self) -> None:
        lines = self.journal.read_text().splitlines()
        entries = []
        for i, line in enumerate(lines):
            try:
                entries.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:
                    break  # a line torn by the interruption: its shard is redone
                raise ResumeError(f"{self.journal} line {i + 1} is damaged; rerun without --resume") from None
        if not entries or entries[0].get("fingerprint") != self.fingerprint:
            old = entries[0].get("fingerprint", {}) if entries else {}
            diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
            raise ResumeError(
                f"the interrupted run in {self.dir} was for different {', '.join(diff) or 'settings'}; "
                "rerun with the same model and inputs, or with --overwrite to start again"
            )
        stop = 0
        for entry in entries[1:]:
            shard = self.dir / entry["shard"]
            if entry["start"] != stop or not shard.is_file():
                break  # anything after a gap is redone
            self.shards.append(entry)
            stop = entry["stop"]
        if len(self.shards) != len(entries) - 1:  # drop journal lines past the first gap
            self._rewrite_journal([entries[0], *self.shards])

    def _rewrite_journal(self, entries: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(e) + "\n" for e in entries).encode()
        atomic_write(self.journal, lambda f: f.write(data))

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.journal, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def add(self, batch: BatchResult) -> None:
        """Buffer one batch; write a shard once ``shard_rows`` rows are buffered."""
        self._buffer.append(batch)
        if self._buffer[-1].stop - self._buffer[0].start >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Write buffered batches as one shard, then record it in the journal."""
        if not self._buffer:
            return
        start, stop = self._buffer[0].start, self._buffer[-1].stop
        if start != self.done_rows:
            raise RuntimeError(f"shard rows {start}..{stop} do not follow the last shard's {self.done_rows}")
        errs = [e for b in self._buffer for e in b.errors]
        dim = self._buffer[0].embeddings.shape[1] if self._buffer[0].embeddings.ndim == 2 else 0
        arrays: dict[str, np.ndarray] = {
            "rows": np.concatenate([b.rows for b in self._buffer]).astype(np.int64),
            "embeddings": np.concatenate([b.embeddings.reshape(-1, dim) for b in self._buffer]).astype(np.float32),
            "error_rows": np.asarray([e.index for e in errs], dtype=np.int64),
            "error_reasons": np.asarray([e.reason for e in errs], dtype=str),
        }
        name = f"shard-{start:012d}.npz"
        atomic_write(self.dir / name, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
        entry = {"shard": name, "start": start, "stop": stop, "ok": len(arrays["rows"]), "errors": len(errs)}
        self._append(entry)
        self.shards.append(entry)
        self._buffer = []

    def gather(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """All shards: (rows, embeddings, [(row, reason)]) in row order."""
        rows: list[np.ndarray] = []
        embs: list[np.ndarray] = []
        errs: list[tuple[int, str]] = []
        for entry in self.shards:
            with np.load(self.dir / entry["shard"], allow_pickle=False) as z:
                rows.append(z["rows"])
                embs.append(z["embeddings"])
                errs.extend(zip(z["error_rows"].tolist(), z["error_reasons"].tolist(), strict=True))
        dim = max((e.shape[1] for e in embs if e.ndim == 2 and e.size), default=0)
        rows_a = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        embs_a = np.concatenate([e.reshape(-1, dim) for e in embs]) if embs else np.zeros((0, dim), np.float32)
        return rows_a, embs_a.astype(np.float32), errs

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def write_table(out: Path, columns: dict[str, np.ndarray], meta: dict[str, str]) -> Path:
    """Write row-aligned ``columns`` (``embeddings`` is N x D) to ``.npz`` or ``.parquet``, atomically."""
    out = Path(out)
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        emb = columns["embeddings"]
        dim = emb.shape[1]
        fields = {k: pa.array(v) for k, v in columns.items() if k not in ("embeddings", "boxes")}
        fields["boxes"] = pa.FixedSizeListArray.from_arrays(pa.array(columns["boxes"].reshape(-1)), 4)
        fields["embeddings"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)
        table = pa.table(fields).replace_schema_metadata(meta)
        return atomic_write(out, lambda f: pq.write_table(table, f))
    arrays = dict(columns)
    arrays.update({k: np.asarray(v, dtype=str) for k, v in meta.items()})
    return atomic_write(out, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def write_errors(out: Path, errors: list[ItemError]) -> Path | None:
    """``OUT.errors.jsonl``: one JSON line per failed input (row, source, reason); removed when none failed."""
    path = errors_path(out)
    if not errors:
        path.unlink(missing_ok=True)
        return None
    data = "".join(json.dumps({"row": e.index, "source": e.source, "reason": e.reason}) + "\n" for e in errors).encode()
    return atomic_write(path, lambda f: f.write(data))
