"""HAN model: attention modules, blocks, the network and the timm-style registry."""

from ..config import BLOCKS, FEATURES, HANConfig, PreprocessConfig
from .han import HAN, AttentionRecord, HANOutput
from .registry import VARIANT_STRIDES, create_model, list_models, model_config, register_model

__all__ = [
    "BLOCKS",
    "FEATURES",
    "HAN",
    "AttentionRecord",
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

__all__ += ["load_checkpoint", "read_checkpoint_header", "save_checkpoint"]
