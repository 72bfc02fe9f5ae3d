"""Inference backends behind one interface; :func:`load_backend` picks one by the artifact's suffix."""

from .base import (
    CHECKPOINT_SUFFIXES,
    ENGINE_SUFFIXES,
    ONNX_SUFFIXES,
    ArtifactMismatchError,
    Backend,
    BackendInactiveError,
    BaseBackend,
    ModelFileError,
    TensorMeta,
    load_backend,
    read_manifest_contract,
    sha256_file,
    verify_artifact,
)

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "ENGINE_SUFFIXES",
    "ONNX_SUFFIXES",
    "ArtifactMismatchError",
    "Backend",
    "BackendInactiveError",
    "BaseBackend",
    "ModelFileError",
    "TensorMeta",
    "load_backend",
    "read_manifest_contract",
    "sha256_file",
    "verify_artifact",
]
