"""The one backend interface (in the spirit of Polygraphy's runners) and ``load_backend``, which picks by artifact.

Every backend reads the preprocessing contract from the artifact itself (ONNX ``metadata_props``, a
``manifest.json`` next to an engine, a checkpoint's header), so callers never pass it twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import numpy as np

from ...config import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, HANConfig, read_contract

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
CHECKPOINT_SUFFIXES = (".safetensors",)


class ModelFileError(ValueError):
    """The model file is missing, of an unsupported kind, or not a han-deploy artifact."""


class ArtifactMismatchError(ModelFileError):
    """The model file's sha256 differs from the one its manifest records (changed after export)."""


class BackendInactiveError(RuntimeError):
    """A backend was used before :meth:`BaseBackend.activate` or after :meth:`BaseBackend.deactivate`."""


class TensorMeta(NamedTuple):
    """One input as the session or engine declares it; a dynamic axis (the batch, usually) is None."""

    shape: tuple[int | None, ...]
    dtype: np.dtype


def tensor_meta(shape: Sequence[Any], dtype: Any) -> TensorMeta:
    """A :class:`TensorMeta` from a declared shape whose dynamic axes are -1, None or a symbolic name."""
    return TensorMeta(tuple(d if isinstance(d, int) and d >= 0 else None for d in shape), np.dtype(dtype))


@runtime_checkable
class Backend(Protocol):
    """What every backend offers: metadata, the activate/deactivate lifecycle, and ``infer`` on a preprocessed batch."""

    name: str
    path: Path
    config: HANConfig
    contract: dict[str, Any]
    input_name: str
    max_batch: int | None

    @property
    def is_active(self) -> bool: ...

    def activate(self) -> Backend: ...

    def deactivate(self) -> None: ...

    def input_metadata(self) -> dict[str, TensorMeta]: ...

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


_B = TypeVar("_B", bound="BaseBackend")


class BaseBackend:
    """The lifecycle and shared behaviour: input checks, splitting batches beyond ``max_batch``, padding fixed batches.

    Construction only records the artifact and options. :meth:`activate` calls :meth:`activate_impl`,
    which loads the session / engine / module and sets ``config``, ``contract``, ``input_name``,
    ``max_batch`` (and ``fixed_batch``) and ``_inputs`` from it; :meth:`infer` runs :meth:`infer_impl`
    on each chunk that fits; :meth:`deactivate` calls :meth:`deactivate_impl`, which releases it
    (metadata stays readable). Activating an active backend and deactivating an inactive one do nothing,
    so ``with load_backend(path) as b:`` works on the active backend ``load_backend`` returns
    (docs/runtime.md, "Lifecycle").
    """

    name = "base"
    path: Path
    config: HANConfig
    contract: dict[str, Any]
    input_name = INPUT_NAME
    output_name = OUTPUT_NAME
    max_batch: int | None = None
    fixed_batch: int | None = None  # a model whose batch axis is static: smaller chunks are zero-padded
    _inputs: dict[str, TensorMeta]
    _active = False

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def activate(self: _B) -> _B:
        """Load the session / engine (a no-op when active); returns the backend, so ``Backend(p).activate()`` chains."""
        if not self._active:
            try:
                self.activate_impl()
            except BaseException:
                self.deactivate_impl()  # release what a partial activation holds
                raise
            self._active = True
        return self

    def deactivate(self) -> None:
        """Release the session / engine (a no-op when inactive); :meth:`activate` loads it again."""
        if self._active:
            self._active = False
            self.deactivate_impl()

    def input_metadata(self) -> dict[str, TensorMeta]:
        """Every model input by name, with the shape and dtype its session or engine declares."""
        self._require_active()
        return dict(self._inputs)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 preprocessed batch -> (N, D) float32 embeddings, any N (split as needed)."""
        self._require_active()
        batch = self._check_input(batch)
        n = batch.shape[0]
        if n == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        step = self.fixed_batch or self.max_batch or n
        outs = []
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            real = chunk.shape[0]
            if self.fixed_batch and real < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - real, *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            outs.append(np.asarray(self.infer_impl(np.ascontiguousarray(chunk)), dtype=np.float32)[:real])
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def activate_impl(self) -> None:
        """Load the session / engine and read the metadata; on an error :meth:`deactivate_impl` runs next."""
        raise NotImplementedError

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """One contiguous float32 chunk that fits the model -> its embeddings."""
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        """Release what :meth:`activate_impl` loaded, also after a partial activation; never raises."""
        raise NotImplementedError

    def _require_active(self) -> None:
        if not self._active:
            raise BackendInactiveError(
                f"{self.name} backend for {self.path} is not active: call activate() first, or use it as a context "
                "manager (load_backend returns an active backend)"
            )

    def _check_input(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        h, w = self.config.preprocess.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w):
            raise ValueError(f"{self.name} backend for {self.path.name} expects (N, 3, {h}, {w}) input, got {batch.shape}")
        if batch.dtype != np.float32:  # no silent cast: a float64 or uint8 batch means a preprocessing bug upstream
            raise TypeError(
                f"{self.name} backend for {self.path.name} expects a float32 batch (the contract's preprocessed input), "
                f"got {batch.dtype}"
            )
        return batch

    def __enter__(self: _B) -> _B:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __repr__(self) -> str:
        state = "active" if self._active else "inactive"
        return f"<{type(self).__name__} {self.path.name} {state} max_batch={self.max_batch}>"


def _sniff(path: Path) -> str | None:
    """A guess at what a file really is, from its first bytes, for error messages."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if not head:
        return "an empty file"
    if head[:3] == b"\xff\xd8\xff":
        return "a JPEG image"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "a PNG image"
    if head[:2] == b"PK":
        return "a zip archive (a torch.save .pt/.pth file?)"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors checkpoint"
    if head.lstrip()[:1] in (b"{", b"["):
        return "a JSON/text file"
    return None


def wrong_kind_error(path: Path, expected: str, detail: object = "") -> ModelFileError:
    """A :class:`ModelFileError` naming the file, what was expected, and what the file looks like."""
    looks = _sniff(path)
    msg = f"{path} is not a valid {expected}"
    if looks:
        msg += f" (it looks like {looks})"
    if detail:
        msg += f": {detail}"
    return ModelFileError(msg)


def manifest_candidates(path: Path) -> list[Path]:
    """Where a sidecar manifest for ``path`` may live: ``NAME.json``, ``STEM.manifest.json``, ``manifest.json``."""
    return [
        path.with_name(path.name + ".json"),
        path.with_name(path.stem + ".manifest.json"),
        path.with_name(path.stem + ".json"),
        path.parent / "manifest.json",
    ]


def _manifest_contract(data: Any, manifest: Path) -> tuple[HANConfig, dict[str, Any]] | None:
    """The contract a manifest embeds under ``contract`` (the object ONNX metadata carries as JSON), or None."""
    contract = data.get("contract") if isinstance(data, dict) else None
    if contract is None:
        return None
    try:
        return read_contract({METADATA_KEY: json.dumps(contract)})
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"manifest {manifest}: its 'contract' is not a han-deploy contract ({exc})") from exc


def read_manifest_contract(path: Path) -> tuple[HANConfig, dict[str, Any], Path]:
    """The contract of an artifact from the first sidecar manifest that describes it."""
    tried = []
    for cand in manifest_candidates(path):
        if not cand.is_file() or cand == path:
            continue
        tried.append(cand.name)
        try:
            data = json.loads(cand.read_text())
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot read manifest {cand} for {path.name}: {exc}") from exc
        found = _manifest_contract(data, cand)
        if found:
            return found[0], found[1], cand
    where = f" (read {', '.join(tried)})" if tried else ""
    raise ModelFileError(
        f"no preprocessing contract for {path}: expected a manifest.json (or {path.name}.json) next to it "
        f"holding the han-deploy contract under 'contract', as han-export writes it{where}"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_sha256(manifest: Path, artifact: Path) -> str | None:
    """The sha256 a manifest records for the artifact's file name (its ``artifacts`` or ``engines`` entries), or None."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read manifest {manifest} for {artifact.name}: {exc}") from exc
    entries = [e for key in ("artifacts", "engines") for e in (data.get(key) or [])] if isinstance(data, dict) else []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("sha256") and Path(str(entry.get("file", ""))).name == artifact.name:
            return str(entry["sha256"])
    return None


def verify_artifact(path: Path, manifest: str | os.PathLike[str] | None = None) -> Path | None:
    """Check the model's sha256 against ``manifest``, or the first manifest beside it that records one.

    Returns the manifest checked (None when no manifest beside the model records the file). Raises
    :class:`ArtifactMismatchError` naming both hashes on a mismatch, and :class:`ModelFileError` when
    a named ``manifest`` is missing or records no sha256 for the model.
    """
    if manifest is not None:
        manifest = Path(manifest)
        if not manifest.is_file():
            raise ModelFileError(f"manifest not found: {manifest}")
        recorded = [(manifest, recorded_sha256(manifest, path))]
        if recorded[0][1] is None:
            raise ModelFileError(f"manifest {manifest} records no sha256 for {path.name}")
    else:
        beside = [m for m in manifest_candidates(path) if m.is_file() and m != path]
        recorded = [(m, digest) for m in beside if (digest := recorded_sha256(m, path)) is not None]
    if not recorded:
        return None
    where, expected = recorded[0]
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactMismatchError(
            f"{path} does not match its manifest {where}: sha256 {actual}, the manifest records {expected} "
            "(the file changed after export; pass --no-verify / verify=False to load it anyway)"
        )
    return where


def load_backend(
    path: str | os.PathLike[str],
    device: str | None = None,
    providers: list[str] | None = None,
    threads: int | None = None,
    *,
    manifest: str | os.PathLike[str] | None = None,
    verify: bool = True,
    **options: Any,
) -> BaseBackend:
    """Open a model artifact with the backend its suffix calls for, checked against its manifest, and activate it.

    ``.onnx`` -> ONNX Runtime (``providers``/``threads``/``spinning`` apply); ``.engine``/``.plan``/``.trt``
    -> the TensorRT runtime (unverified here, needs an NVIDIA GPU); ``.safetensors`` -> PyTorch, imported
    only now. ``device`` is ``"cpu"``, ``"cuda"``/``"cuda:N"``, or ``"auto"`` (best available); None means
    the artifact's natural device: ``"cpu"`` for ONNX and checkpoints, ``"cuda:0"`` for engines.
    With ``verify`` (the default) the file's sha256 must equal the one recorded in ``manifest`` or in
    a manifest beside it (:func:`verify_artifact`); ``verify=False`` skips the check. The backend comes
    back active (ready for ``infer``); construct the backend class itself for an inactive one.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a model file")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if verify:
        verify_artifact(path, manifest)
    elif manifest is not None:
        raise ValueError("manifest given with verify=False: the manifest is only used to verify the model")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=device or "cpu", providers=providers, threads=threads, **options).activate()
    if suffix in ENGINE_SUFFIXES:
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, device=device or "cuda:0", **options).activate()
    if suffix in CHECKPOINT_SUFFIXES:
        from .torch_backend import TorchBackend

        return TorchBackend(path, device=device or "cpu", threads=threads, **options).activate()
    known = ", ".join(ONNX_SUFFIXES + ENGINE_SUFFIXES + CHECKPOINT_SUFFIXES)
    looks = _sniff(path)
    hint = f"; it looks like {looks}" if looks else ""
    raise ModelFileError(f"{path}: unsupported model file suffix {suffix or '(none)'!r}; expected one of {known}{hint}")
