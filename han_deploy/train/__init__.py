"""Training stage: the paper's recipe (han-train), losses, PK sampler, augmentation.

Embeddings of a torch model: :func:`han_deploy.model.extract_embeddings`; its evaluation:
:func:`han_deploy.evaluate.torch_eval.evaluate_model`.
"""

from .dataset import ReidDataset
from .losses import batch_hard_triplet, han_losses
from .sampler import PKSampler
from .schedule import scaled_milestones
from .trainer import TrainConfig, Trainer, TrainResult, train

__all__ = [
    "PKSampler",
    "ReidDataset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "batch_hard_triplet",
    "han_losses",
    "scaled_milestones",
    "train",
]
