"""Torch-free runtime: backends, preprocessing, batch and streaming extraction, gallery search.

Importing this package loads numpy and OpenCV only; ONNX Runtime (or TensorRT, or torch for a
checkpoint) is imported when a backend is loaded, faiss when a gallery is searched with it.
"""

from ..contract.decode import DecodeError, read_image
from ..contract.preprocess import clip_box, crop_box, normalize_batch, preprocess, resize_crop, to_bgr_uint8
from .backends import ArtifactMismatchError, Backend, BackendInactiveError, ModelFileError, load_backend
from .extractor import EmbedResult, ExtractionError, Extractor, ItemError, StreamingExtractor
from .gallery import Gallery, SearchResult

__all__ = [
    "ArtifactMismatchError",
    "Backend",
    "BackendInactiveError",
    "DecodeError",
    "EmbedResult",
    "ExtractionError",
    "Extractor",
    "Gallery",
    "ItemError",
    "ModelFileError",
    "SearchResult",
    "StreamingExtractor",
    "clip_box",
    "crop_box",
    "load_backend",
    "normalize_batch",
    "preprocess",
    "read_image",
    "resize_crop",
    "to_bgr_uint8",
]
