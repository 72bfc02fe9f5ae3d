"""Training stage: the paper's recipe (han-train), losses, PK sampler, augmentation, embeddings from torch models."""

from .dataset import ReidDataset
from .evaluation import embed_records, evaluate_model
from .extract import extract_embeddings
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
    "embed_records",
    "evaluate_model",
    "extract_embeddings",
    "han_losses",
    "scaled_milestones",
    "train",
]
