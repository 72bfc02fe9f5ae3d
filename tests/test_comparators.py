"""The ResNet50 and MobileNetV2 re-id comparators in the model registry: shapes, and FLOPs/params against the papers'
published figures."""

from __future__ import annotations

import functools

import pytest
import torch

pytest.importorskip("fvcore")

from han_deploy.config import PreprocessConfig  # noqa: E402
from han_deploy.model import HAN, create_model, list_models, model_config  # noqa: E402
from han_deploy.model.flops import count_macs, count_params  # noqa: E402

# published multiply-adds at 224x224 (conv + the 1000-way FC, which these re-id heads do not have) and params
RESNET50_MACS_224 = (
    4.09e9  # He et al. 2016 Table 1 reports 3.8e9 for its stride-in-1x1 placement; 4.09e9 with the stride in the 3x3
)
RESNET50_FC_MACS = 2048 * 1000
MOBILENETV2_MACS_224 = 300e6  # Sandler et al. 2018 Table 4
MOBILENETV2_FC_MACS = 1280 * 1000


@functools.cache
def macs(name: str, size: tuple[int, int], **options: str) -> int:
    """fvcore conv+linear MACs, counted once per network and size (tracing ResNet50 at 224x224 takes seconds)."""
    return count_macs(create_model(name, preprocess=PreprocessConfig(input_size=size), **options), size)


@pytest.mark.parametrize(("name", "dim"), [("resnet50", 2048), ("mobilenetv2", 1280)])
def test_eval_embeddings_and_train_outputs(name: str, dim: int) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        emb = model(torch.randn(2, 3, 160, 64))
    assert emb.shape == (2, dim) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    train = create_model(name, num_classes=7, embed_dim=256).train()
    logits, feat = train(torch.randn(2, 3, 160, 64))
    assert logits.shape == (2, 7) and feat.shape == (2, 256)


def test_resnet50_macs_match_the_published_figures_at_224() -> None:
    assert abs(macs("resnet50", (224, 224)) + RESNET50_FC_MACS - RESNET50_MACS_224) / RESNET50_MACS_224 < 0.01
    original = macs("resnet50", (224, 224), stride_in="1x1")
    assert abs(original + RESNET50_FC_MACS - 3.8e9) / 3.8e9 < 0.03
    # 25.6M with the 1000-way FC; the re-id head has a 2048-d BNNeck instead
    assert abs(count_params(create_model("resnet50")) + 2048 * 1000 + 1000 - 25.557e6) / 25.557e6 < 0.01


def test_mobilenetv2_macs_match_the_published_figures_at_224() -> None:
    assert abs(macs("mobilenetv2", (224, 224)) + MOBILENETV2_FC_MACS - MOBILENETV2_MACS_224) / MOBILENETV2_MACS_224 < 0.02
    # 3.4M (paper) / 3.5M (with the FC); without the FC about 2.2M
    assert abs(count_params(create_model("mobilenetv2")) + 1280 * 1000 + 1000 - 3.505e6) / 3.505e6 < 0.01


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_macs_scale_with_the_pixel_count(name: str) -> None:
    """256x128 (re-id's usual input) costs about the 224x224 figure times the pixel ratio."""
    scaled = macs(name, (224, 224)) * 256 * 128 / (224 * 224)
    assert abs(macs(name, (256, 128)) - scaled) / scaled < 0.06


def test_registered_beside_the_han_variants_and_listed_apart() -> None:
    assert list_models("han_*") == ["han_large", "han_medium", "han_small"]
    assert set(list_models()) == {"han_large", "han_medium", "han_small", "mobilenetv2", "resnet50"}
    assert not isinstance(create_model("mobilenetv2"), HAN)
    assert model_config("resnet50", last_stride=1).to_dict()["last_stride"] == 1  # the exported contract says so


def test_bad_comparator_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        create_model("vgg16")
    with pytest.raises(ValueError, match="last_stride"):
        create_model("resnet50", last_stride=3)
    with pytest.raises(ValueError, match="stride_in"):
        create_model("resnet50", stride_in="7x7")
    with pytest.raises(TypeError, match="unknown option.*last_stride"):
        create_model("mobilenetv2", last_stride=1)
