"""Mixed precision for training: which convolutions stay float32 under bf16 autocast, and that nothing else changes."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from _train_data import tiny_splits
from torch import nn

from han_deploy.model import create_model
from han_deploy.train import TrainConfig, Trainer
from han_deploy.train.precision import Float32Conv2d, autocast, is_strided_depthwise, keep_strided_depthwise_float32

TINY = {"channels": (16, 32, 48), "stem_channels": 8, "feat_dim": 32}


@pytest.mark.parametrize(
    ("conv", "expected"),
    [
        (nn.Conv2d(8, 8, 3, stride=2, groups=8), True),
        (nn.Conv2d(8, 8, 3, stride=(1, 2), groups=8), True),
        (nn.Conv2d(8, 8, 3, stride=1, groups=8), False),  # stride 1: bf16 backward is fast
        (nn.Conv2d(8, 16, 3, stride=2), False),  # dense
        (nn.Conv2d(8, 8, 3, stride=2, groups=4), False),  # grouped, not depthwise
        (nn.Conv2d(1, 1, 3, stride=2), False),  # one channel: a dense conv
        (nn.Conv1d(8, 8, 3, stride=2, groups=8), False),
    ],
)
def test_which_convolutions_are_strided_depthwise(conv: nn.Module, expected: bool) -> None:
    assert is_strided_depthwise(conv) is expected


def test_strided_depthwise_convs_run_float32_under_bf16_autocast_and_nothing_else_changes() -> None:
    torch.manual_seed(0)
    model = create_model("small", **TINY).eval()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 160, 64)
    with torch.no_grad():
        before = model(x)
    strided = [m for m in model.modules() if is_strided_depthwise(m)]
    assert keep_strided_depthwise_float32(model) == len(strided) > 0
    assert keep_strided_depthwise_float32(model) == 0  # already wrapped: nothing wrapped twice
    assert list(model.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(model(x), before)  # without autocast: the same arithmetic
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert sum(isinstance(m, Float32Conv2d) for m in clone.modules()) == len(strided)
        with torch.no_grad():
            assert torch.equal(clone(x), before)
    conv = strided[0]
    pointwise = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))
    inp = torch.randn(2, conv.in_channels, 16, 8)
    with autocast(True, torch.device("cpu")):
        assert conv(inp).dtype == torch.float32
        assert conv(inp.bfloat16()).dtype == torch.float32
        assert pointwise(torch.randn(2, pointwise.in_channels, 8, 4)).dtype == torch.bfloat16
        loss = conv(inp.requires_grad_()).sum()
    loss.backward()
    assert conv.weight.grad.dtype == torch.float32 and inp.grad.dtype == torch.float32
    with autocast(False, torch.device("cpu")):
        assert pointwise(torch.randn(2, pointwise.in_channels, 8, 4)).dtype == torch.float32


def test_subclasses_of_conv2d_are_left_alone() -> None:
    class Custom(nn.Conv2d):
        pass

    model = nn.Sequential(Custom(8, 8, 3, stride=2, groups=8), nn.Conv2d(8, 8, 3, stride=2, groups=8))
    assert keep_strided_depthwise_float32(model) == 1
    assert type(model[0]) is Custom and type(model[1]) is Float32Conv2d


@pytest.mark.parametrize("amp", [True, False])
def test_the_trainer_keeps_strided_depthwise_float32_only_with_amp(
    amp: bool, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = TrainConfig(output=str(tmp_path), variant="small", batch_size=16, threads=1, dataset="tiny", amp=amp)
    model = Trainer(cfg, tiny_splits(tmp_path_factory)).model
    wrapped = [m for m in model.modules() if isinstance(m, Float32Conv2d)]
    assert len(wrapped) == (6 if amp else 0)  # each HAN variant has six strided depthwise 3x3 convolutions
    assert sum(is_strided_depthwise(m) for m in model.modules()) == 6


def test_amp_warns_only_on_a_cpu_known_to_lack_native_bf16(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = TrainConfig(output=str(tmp_path), variant="small", batch_size=16, threads=1, dataset="tiny", amp=True)
    for native, warned in ((False, True), (None, False), (True, False)):
        caplog.clear()
        monkeypatch.setattr("han_deploy.train.trainer.native_bf16", lambda native=native: native)
        Trainer(cfg, tiny_splits(tmp_path_factory))
        assert ("neither AVX512-BF16 nor AMX" in caplog.text) is warned
