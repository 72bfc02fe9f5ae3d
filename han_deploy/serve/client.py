"""Embed crops through a Triton server with the local ``Extractor``'s contract (tritonclient, HTTP or gRPC).

``TritonBackend`` is a runtime backend whose ``infer`` is a Triton request, so the runtime's own
:class:`~han_deploy.runtime.extractor.Extractor` runs on it unchanged: same inputs (paths, encoded
bytes, BGR arrays, frames plus boxes), same preprocessing (done on the client, from the contract the
server's model config carries), same ``(N, D)`` float32 output and the same per-item error handling::

    extractor = triton_extractor("127.0.0.1:8000", model="han_python", protocol="http")
    embeddings = extractor.embed(list_of_bgr_crops)   # (N, 1024) float32, as Extractor("han.onnx").embed(...)

``TritonEncodedExtractor`` sends encoded JPEG/PNG bytes to the ``{prefix}_jpeg`` model instead, which
decodes and resizes on the server. tritonclient's HTTP client is gevent-based and must not be shared
between threads, so each thread gets its own client (gRPC clients are kept per thread too).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import METADATA_KEY, read_contract
from ..runtime.backends import BaseBackend
from ..runtime.backends.base import tensor_meta
from ..runtime.extractor import EmbedResult, Extractor, ItemError, describe

PROTOCOLS = ("http", "grpc")
_NP_TO_TRITON = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8", "object": "BYTES", "bool": "BOOL"}


class TritonConnection:
    """Thread-local tritonclient clients for one model on one server, and that model's config as a dict."""

    def __init__(self, url: str, model: str, protocol: str = "http", version: str = "", timeout_s: float = 60.0) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.url, self.model, self.protocol, self.version, self.timeout_s = url, model, protocol, version, timeout_s
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        client = self.client()
        if not client.is_model_ready(model, version):
            raise RuntimeError(f"model {model!r} is not ready on the Triton server at {url} ({protocol})")
        raw = client.get_model_config(model, version, **({"as_json": True} if protocol == "grpc" else {}))
        self.config: dict[str, Any] = raw.get("config", raw) if protocol == "grpc" else raw
        self.parameters = {k: v.get("string_value", "") for k, v in self.config.get("parameters", {}).items()}
        self.max_batch_size = int(self.config.get("max_batch_size", 0))

    @property
    def module(self) -> Any:
        if self.protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        return module

    def client(self) -> Any:
        """This thread's client (created on first use)."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                client = self.module.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            else:
                client = self.module.InferenceServerClient(self.url)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def infer(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """One inference request: named numpy inputs -> the named outputs as numpy arrays."""
        m = self.module
        tensors = []
        for name, array in inputs.items():
            tensor = m.InferInput(name, list(array.shape), _NP_TO_TRITON[array.dtype.name])
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        if self.protocol == "http":
            wanted = [m.InferRequestedOutput(name, binary_data=True) for name in outputs]
            result = self.client().infer(self.model, tensors, model_version=self.version, outputs=wanted, timeout=None)
        else:
            wanted = [m.InferRequestedOutput(name) for name in outputs]
            result = self.client().infer(
                self.model, tensors, model_version=self.version, outputs=wanted, client_timeout=self.timeout_s
            )
        return {name: result.as_numpy(name) for name in outputs}

    def contract(self) -> tuple[Any, dict[str, Any]]:
        """The (HANConfig, contract dict) the model's config carries in its ``han_deploy.contract`` parameter."""
        if METADATA_KEY not in self.parameters:
            raise ValueError(f"model {self.model!r} at {self.url} has no {METADATA_KEY!r} parameter: not a han-deploy model")
        return read_contract({METADATA_KEY: self.parameters[METADATA_KEY]})

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._local = threading.local()


class TritonBackend(BaseBackend):
    """A runtime backend that runs each (chunk of a) batch as one Triton request to a tensor-input model.

    Activation connects and reads the contract, input and batch size from the server's model config.
    """

    name = "triton"
    connection: TritonConnection | None = None

    def __init__(
        self, url: str, model: str = "han_python", protocol: str = "http", version: str = "", timeout_s: float = 60.0
    ) -> None:
        self.url, self.model, self.protocol, self.version, self.timeout_s = url, model, protocol, version, timeout_s
        self.path = Path(f"{protocol}://{url}/{model}")

    def activate_impl(self) -> None:
        self.connection = TritonConnection(self.url, self.model, self.protocol, self.version, self.timeout_s)
        self.config, self.contract = self.connection.contract()
        self.input_name = self.contract.get("input_name", self.input_name)
        self.output_name = self.contract.get("output_name", self.output_name)
        self.max_batch = self.connection.max_batch_size or None
        declared = {t["name"]: t for t in self.connection.config.get("input", [])}
        if self.input_name not in declared:
            raise ValueError(
                f"model {self.model!r} has no input {self.input_name!r} (has {sorted(declared)}); is it the encoded-image model?"
            )
        spec = declared[self.input_name]
        dims = [int(d) for d in spec.get("dims", [])]  # JSON configs give int64 dims as strings
        batch_axis = [-1] if self.max_batch else []  # a batching model's dims leave the batch axis out
        dtype = np.float16 if spec.get("data_type") == "TYPE_FP16" else np.float32
        self._inputs = {self.input_name: tensor_meta(batch_axis + dims, dtype)}

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        assert self.connection is not None  # infer() runs infer_impl only while active
        dtype = self._inputs[self.input_name].dtype
        out = self.connection.infer({self.input_name: batch.astype(dtype, copy=False)}, [self.output_name])
        return out[self.output_name]

    def deactivate_impl(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def triton_extractor(
    url: str, model: str = "han_python", protocol: str = "http", batch_size: int | None = None, **options: Any
) -> Extractor:
    """An :class:`Extractor` whose model runs on Triton; ``batch_size`` defaults to the model's ``max_batch_size``."""
    backend = TritonBackend(url, model, protocol).activate()
    return Extractor(backend, batch_size=batch_size or backend.max_batch or 32, **options)


class TritonEncodedExtractor:
    """Embeds encoded images (bytes, or paths read as bytes) with the server-side decoding model (``{prefix}_jpeg``).

    ``embed`` has the local ``Extractor.embed`` contract: (N, D) float32, or with ``errors="collect"`` an
    :class:`EmbedResult` whose failed rows are NaN; the server marks undecodable images ``valid = False``.
    """

    def __init__(self, url: str, model: str = "han_jpeg", protocol: str = "http", batch_size: int | None = None) -> None:
        self.connection = TritonConnection(url, model, protocol)
        self.config, self.contract = self.connection.contract()
        self.dim = self.config.embedding_dim
        self.batch_size = batch_size or self.connection.max_batch_size or 32

    def embed(self, images: Iterable[bytes | str | os.PathLike[str]], errors: Literal["raise", "collect"] = "raise") -> Any:
        if errors not in ("raise", "collect"):
            raise ValueError(f"errors must be 'raise' or 'collect', got {errors!r}")
        items = list(images)
        out = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(items), dtype=bool)
        errs: list[ItemError] = []
        payload: list[tuple[int, bytes]] = []
        for i, item in enumerate(items):
            try:
                payload.append((i, item if isinstance(item, bytes) else Path(item).read_bytes()))
            except (OSError, TypeError) as exc:
                errs.append(ItemError(i, describe(item), f"cannot read: {exc}"))
        for start in range(0, len(payload), self.batch_size):
            chunk = payload[start : start + self.batch_size]
            data = np.empty((len(chunk), 1), dtype=object)
            data[:, 0] = [raw for _, raw in chunk]
            res = self.connection.infer({"encoded": data}, ["embeddings", "valid"])
            for (i, _), emb, valid in zip(chunk, res["embeddings"], res["valid"].reshape(-1), strict=True):
                if valid:
                    out[i], ok[i] = emb, True
                else:
                    errs.append(ItemError(i, describe(items[i]), "the server could not decode the image"))
        errs.sort(key=lambda e: e.index)
        return EmbedResult(out, ok, errs).resolve(errors)

    def close(self) -> None:
        self.connection.close()
