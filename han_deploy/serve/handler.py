"""What the python-backend models do with one dynamic batch of requests, kept free of Triton so it is testable.

Triton's dynamic batcher hands ``execute`` several requests at once; :class:`BatchHandler` runs all of
their items through the runtime in one ``backend.infer`` call and splits the result back per request.
A malformed request gets its own error and never sinks the others; an undecodable image gets a zero
embedding and ``valid = False``, never an error for its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import METADATA_KEY, read_contract
from ..contract.decode import DecodeError, decode_bytes
from ..contract.preprocess import preprocess
from ..runtime import load_backend

INPUT_KINDS = ("tensor", "encoded", "preprocess")


@dataclass
class Result:
    """Per request: embeddings ``(n, D)`` (or the network input ``images``) and ``valid`` ``(n, 1)``, or an error."""

    embeddings: np.ndarray | None = None
    images: np.ndarray | None = None
    valid: np.ndarray | None = None
    error: str | None = None


def decode_image(data: Any) -> np.ndarray | None:
    """Encoded bytes (JPEG/PNG/...; ``bytes`` or a numpy bytes scalar) -> BGR uint8 image, or None if undecodable.

    Same decoder as the local :class:`~han_deploy.runtime.Extractor` (truncated JPEGs are refused too).
    """
    try:
        return decode_bytes(bytes(data))
    except (DecodeError, TypeError):
        return None


class BatchHandler:
    """Runs dynamic batches of tensor or encoded-image requests through one runtime backend.

    ``input_kind="preprocess"`` stops before the model (an ensemble's first step): results carry the
    network input batch in ``images`` and no backend is loaded; the contract JSON gives the
    preprocessing. The other kinds read the contract from ``model_file``.
    """

    def __init__(
        self,
        model_file: str | Path | None,
        input_kind: str = "tensor",
        device: str = "cpu",
        contract: str | None = None,
        **backend_options: Any,
    ) -> None:
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
        self.input_kind = input_kind
        if input_kind == "preprocess":
            if not contract:
                raise ValueError("input_kind='preprocess' needs the contract JSON (the han_deploy.contract parameter)")
            self.backend = None
            self.config = read_contract({METADATA_KEY: contract})[0]
        else:
            if model_file is None:
                raise ValueError(f"input_kind={input_kind!r} needs a model file")
            self.backend = load_backend(model_file, device=device, **backend_options)
            self.config = self.backend.config
        h, w = self.config.preprocess.input_size
        self.item_shape = (3, h, w)
        self.dim = self.config.embedding_dim

    def _tensor_items(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim != 4 or array.shape[1:] != self.item_shape:
            raise ValueError(f"input must be (N, {', '.join(map(str, self.item_shape))}), got {tuple(array.shape)}")
        if array.dtype != np.float32:
            raise ValueError(f"input must be float32, got {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError("input holds NaN or infinite values")
        return array

    def _encoded_items(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = np.asarray(array, dtype=object).reshape(-1)
        images = [decode_image(item) for item in flat]
        valid = np.array([im is not None for im in images], dtype=bool)
        batch = np.zeros((len(images), *self.item_shape), dtype=np.float32)
        if valid.any():
            batch[valid] = preprocess([im for im in images if im is not None], self.config.preprocess)
        return batch, valid

    def run(self, inputs: list[np.ndarray]) -> list[Result]:
        """One entry per request (its input array) -> one :class:`Result` per request, in order."""
        results: list[Result] = [Result() for _ in inputs]
        chunks: list[np.ndarray] = []
        owners: list[tuple[int, int, np.ndarray]] = []  # (request index, item count, valid mask)
        for i, array in enumerate(inputs):
            try:
                if self.input_kind == "tensor":
                    batch = self._tensor_items(array)
                    valid = np.ones(batch.shape[0], dtype=bool)
                else:
                    batch, valid = self._encoded_items(array)
            except (ValueError, TypeError) as exc:
                results[i].error = f"bad request: {exc}"
                continue
            chunks.append(batch)
            owners.append((i, batch.shape[0], valid))
        if self.backend is None:  # preprocess only: each request's own batch is its result
            for (i, _, valid), batch in zip(owners, chunks, strict=True):
                results[i].images, results[i].valid = batch, valid.reshape(-1, 1)
            return results
        if not chunks:
            return results
        embeddings = self.backend.infer(np.concatenate(chunks)) if sum(n for _, n, _ in owners) else np.zeros((0, self.dim))
        start = 0
        for i, n, valid in owners:
            out = np.array(embeddings[start : start + n], dtype=np.float32)
            out[~valid] = 0.0
            results[i].embeddings = out
            results[i].valid = valid.reshape(-1, 1)
            start += n
        return results

    def close(self) -> None:
        if self.backend is not None:
            self.backend.deactivate()
