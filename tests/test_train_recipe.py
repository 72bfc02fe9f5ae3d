"""The CPU-budget recipe's parts: warm-up + cosine, the budget fit, the validation carve, batch augmentation,
the decode-once cache, and the trainer using them (budgeted end, exact resume, recipe presets on the CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _train_data import FAST_RECIPE, tiny_dataset, tiny_splits

from han_deploy.contract.decode import read_image
from han_deploy.contract.preprocess import preprocess
from han_deploy.data.records import DatasetSplits, Record
from han_deploy.data.validation import carve_validation
from han_deploy.model import create_model
from han_deploy.train import TrainConfig, Trainer
from han_deploy.train.augment import BatchAugment
from han_deploy.train.cli import config_from_args, parse_args
from han_deploy.train.memory_cache import ImageCache
from han_deploy.train.schedule import COSINE_FLOOR, WARMUP_START, fit_epochs, refit_plan, warmup_cosine
from han_deploy.train.trainer import relabel_subset


def test_warmup_then_cosine_reaches_the_floor() -> None:
    factors = [warmup_cosine(i, 10, 110) for i in range(111)]
    assert factors[0] == pytest.approx(WARMUP_START) and factors[5] == pytest.approx(WARMUP_START + (1 - WARMUP_START) / 2)
    assert factors[10] == pytest.approx(1.0) and factors[60] == pytest.approx((1 + COSINE_FLOOR) / 2)
    assert factors[110] == pytest.approx(COSINE_FLOOR) and warmup_cosine(500, 10, 110) == pytest.approx(COSINE_FLOOR)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # no rise after the warm-up
    assert warmup_cosine(0, 0, 10) == pytest.approx(1.0)  # no warm-up: starts at the peak


def test_fit_epochs_spends_the_budget_and_never_less_than_done() -> None:
    # 600 s budget, 100 s spent, 50 s/epoch, 40 s kept for the final evaluation: floor(460 / 50) = 9 more
    assert fit_epochs(600, 100, 2, 50, 40, cap=300) == 11
    assert fit_epochs(600, 100, 2, 50, 40, cap=5) == 5  # --epochs caps it
    assert fit_epochs(600, 700, 3, 50, 40, cap=300) == 3  # over budget: stop now
    assert fit_epochs(10, 0, 0, 50, 0, cap=300) == 1  # a run has at least one epoch
    with pytest.raises(ValueError, match="positive"):
        fit_epochs(600, 0, 1, 0, 0, cap=300)


def test_a_budget_plan_shrinks_at_once_and_grows_back_with_a_margin() -> None:
    assert refit_plan(40, 32) == 32  # slower epochs: the budget is a limit
    assert refit_plan(32, 33) == 32  # one more fits: noise, keep the plan
    assert refit_plan(32, 45) == 44  # a slowdown passed: grow back, one epoch short of the fit
    assert refit_plan(32, 32) == 32


def _two_camera_splits(ids: int = 12) -> DatasetSplits:
    train = [Record(Path(f"{p:04d}_{i:02d}.jpg"), p, 0 if i < 5 else 1) for p in range(ids) for i in (0, 1, 5, 6)]
    return DatasetSplits("pairs", train, [], [])


def test_validation_carve_holds_out_whole_identities_and_relabels_the_rest() -> None:
    splits = _two_camera_splits()
    val = carve_validation(splits, 4, seed=3, cross_camera=True)
    held = {r.path.name[:4] for r in val.query + val.gallery}
    kept = {r.path.name[:4] for r in val.train}
    assert len(held) == 4 and not held & kept and len(kept) == 8
    assert sorted({r.pid for r in val.train}) == list(range(8))
    assert {r.camid for r in val.query} == {0} and {r.camid for r in val.gallery} == {1}
    assert carve_validation(splits, 4, seed=3, cross_camera=True).query == val.query  # seeded
    single = carve_validation(splits, 4, seed=3)  # one query per (id, camera), rest gallery
    assert len(single.query) == 8 and len(single.gallery) == 8
    with pytest.raises(ValueError, match="--val-ids 11"):
        carve_validation(splits, 11)


def test_batch_augment_flip_and_shift_match_their_definitions() -> None:
    x = torch.randn(6, 3, 16, 8)
    assert torch.equal(BatchAugment()(x, torch.Generator()), x) and not BatchAugment().active
    flipped = BatchAugment(flip=True)(x, torch.Generator().manual_seed(0))
    for i in range(6):  # each image is itself or its mirror image
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    assert not torch.equal(flipped, x) and not torch.equal(flipped, x.flip(3))
    shifted = BatchAugment(pad=3)(x, torch.Generator().manual_seed(1))
    shifts = torch.randint(-3, 4, (6, 2), generator=torch.Generator().manual_seed(1)).tolist()
    padded = F.pad(x, (3, 3, 3, 3))
    expected = torch.stack([padded[i, :, 3 - dy : 19 - dy, 3 - dx : 11 - dx] for i, (dy, dx) in enumerate(shifts)])
    assert torch.equal(shifted, expected)  # pad-and-crop, done as one shifted copy
    aug = BatchAugment(flip=True, pad=2, erasing=0.5)
    assert torch.equal(aug(x, torch.Generator().manual_seed(5)), aug(x, torch.Generator().manual_seed(5)))


def test_cache_decodes_exactly_as_the_runtime_and_marks_unreadable_files(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    splits = tiny_splits(tmp_path_factory)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    paths = [r.path for r in splits.train[:5]] + [bad]
    contract = create_model("small").cfg.preprocess
    cache = ImageCache.build(paths, contract, progress=False)
    assert cache.ok.tolist() == [True] * 5 + [False] and cache.nbytes == 6 * 160 * 64 * 3
    expected = preprocess([read_image(p) for p in paths[:5]], contract)
    np.testing.assert_array_equal(cache.batch([0, 1, 2, 3, 4]).numpy(), expected)
    with pytest.raises(ValueError, match="empty list"):
        ImageCache.build([], contract)


BASE = {"variant": "small", "batch_size": 16, "threads": 1, "seed": 3, "dataset": "tiny"}


def test_a_tiny_budget_ends_after_one_epoch_with_an_evaluation(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = relabel_subset(tiny_splits(tmp_path_factory), 32, seed=1)
    result = Trainer(TrainConfig(output=str(tmp_path), budget_minutes=1e-4, **BASE, **FAST_RECIPE), splits).fit()
    entry = result.last_entry
    assert entry["epoch"] == 1 and entry["planned_epochs"] == 1 and "mAP" in entry["eval"]
    assert entry["eval_label"].startswith("test") and result.best_checkpoint is not None


def test_recipe_presets_fill_defaults_and_explicit_options_win(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = str(tiny_dataset(tmp_path_factory))
    base = ["--data", root, "--dataset", "cuhk03_pair"]
    paper = config_from_args(parse_args(base), base)
    assert (paper.schedule, paper.flip, paper.label_smoothing, paper.random_erasing) == ("step", False, 0.0, 0.0)
    assert paper.retain_heap is True
    argv = base + ["--recipe", "fast", "--budget-minutes", "90", "--no-flip", "--val-ids", "5", "--no-retain-heap"]
    fast = config_from_args(parse_args(argv), argv)
    assert (fast.recipe, fast.schedule, fast.label_smoothing, fast.pad, fast.budget_minutes) == ("fast", "cosine", 0.1, 10, 90)
    assert (fast.random_erasing, fast.weight_decay) == (0.7, 1e-3)
    assert fast.flip is False and fast.eval_label == "validation" and fast.both_directions and fast.retain_heap is False
    with pytest.raises(SystemExit):
        parse_args(base + ["--recipe", "nope"])
    with pytest.raises(ValueError, match="--budget-minutes"):
        TrainConfig(budget_minutes=0).check()


@pytest.mark.parametrize("retain", [True, False])
def test_the_trainer_keeps_freed_memory_only_when_told(
    retain: bool, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allocator setting is process-wide: han-train asks for it, a Trainer built from Python only when told."""
    seen: list[bool] = []
    monkeypatch.setattr("han_deploy.train.trainer.retain_freed_memory", lambda: seen.append(True) or True)
    Trainer(TrainConfig(output=str(tmp_path), retain_heap=retain, **BASE), tiny_splits(tmp_path_factory))
    assert len(seen) == int(retain)
    assert TrainConfig().retain_heap is False


def test_a_shrunken_step_plan_never_skips_a_decay(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = relabel_subset(tiny_splits(tmp_path_factory), 32, seed=1)
    trainer = Trainer(TrainConfig(output=str(tmp_path), epochs=9, **BASE), splits)  # paper steps after 3, 6, 8
    assert trainer.milestones == [3, 6, 8]
    trainer.fit(stop_after=3)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)  # the decay after epoch 3
    trainer.milestones[:] = [1, 2, 3]  # a plan shrunk after epoch 3 moves every milestone into the past
    trainer.scheduler.step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-5)  # all three decays, none skipped


def test_resume_refuses_another_schedule_naming_it(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = relabel_subset(tiny_splits(tmp_path_factory), 32, seed=1)
    Trainer(TrainConfig(output=str(tmp_path), epochs=2, **BASE), splits).fit(stop_after=1)
    with pytest.raises(ValueError, match="schedule was 'step'"):
        Trainer(TrainConfig(output=str(tmp_path), epochs=2, **BASE, **FAST_RECIPE), splits, resume=True)


def test_resume_with_changed_recipe_values_warns_naming_them(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    splits = relabel_subset(tiny_splits(tmp_path_factory), 32, seed=1)
    Trainer(TrainConfig(output=str(tmp_path), epochs=2, **BASE, **FAST_RECIPE), splits).fit(stop_after=1)
    with caplog.at_level("WARNING"):
        Trainer(TrainConfig(output=str(tmp_path), epochs=3, **BASE, **FAST_RECIPE), splits, resume=True)
    assert not [r for r in caplog.records if "changed training options" in r.getMessage()]  # a longer plan is no change
    moved = dict(FAST_RECIPE, random_erasing=0.7)
    with caplog.at_level("WARNING"):
        Trainer(TrainConfig(output=str(tmp_path), epochs=2, weight_decay=1e-3, **BASE, **moved), splits, resume=True)
    warned = [r.getMessage() for r in caplog.records if "changed training options" in r.getMessage()]
    assert len(warned) == 1 and "random_erasing 0.5 -> 0.7" in warned[0] and "weight_decay 0.0005 -> 0.001" in warned[0]


def test_every_recipe_value_names_a_han_train_option() -> None:
    from han_deploy.train.cli import build_parser
    from han_deploy.train.recipes import RECIPES

    dests = {action.dest for action in build_parser()._actions}
    for name, values in RECIPES.items():
        assert set(values) <= dests, f"recipe {name!r} sets unknown options {set(values) - dests}"


@pytest.mark.parametrize("native", [True, False, None])
def test_amp_defaults_on_only_for_the_fast_recipe_on_a_cpu_with_native_bf16(
    native: bool | None, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("han_deploy.train.precision.native_bf16", lambda: native)
    base = ["--data", str(tiny_dataset(tmp_path_factory)), "--dataset", "cuhk03_pair"]

    def amp(*extra: str) -> bool:
        argv = base + list(extra)
        return config_from_args(parse_args(argv), argv).amp

    assert amp("--recipe", "fast") is (native is True)
    assert amp("--recipe", "fast", "--no-amp") is False
    assert amp("--recipe", "fast", "--device", "cuda") is False
    assert amp() is False  # the paper's recipe stays as it was
    assert amp("--amp") is True
