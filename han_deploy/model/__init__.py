"""HAN model: attention modules, blocks, the network, the timm-style registry (with the benchmark's ResNet50 /
MobileNetV2 comparators), checkpoints and embeddings of a torch model."""

from ..config import BLOCKS, FEATURES, HANConfig, PreprocessConfig
from .comparators import ComparatorConfig
from .han import HAN, AttentionRecord, HANOutput
from .registry import VARIANT_STRIDES, create_model, list_models, model_config, register_model

__all__ = [
    "BLOCKS",
    "FEATURES",
    "HAN",
    "AttentionRecord",
    "ComparatorConfig",
    "HANConfig",
    "HANOutput",
    "PreprocessConfig",
    "VARIANT_STRIDES",
    "create_model",
    "list_models",
    "model_config",
    "register_model",
]

from .checkpoint import load_checkpoint, read_checkpoint_header, save_checkpoint  # noqa: E402
from .embed import extract_embeddings  # noqa: E402

__all__ += ["extract_embeddings", "load_checkpoint", "read_checkpoint_header", "save_checkpoint"]
