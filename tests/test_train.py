"""han-train end to end on tiny synthetic data: outputs, learning, exact resume, bad input."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from _train_data import FAST_RECIPE, tiny_dataset, tiny_splits

from han_deploy.contract.decode import DecodeError, read_image
from han_deploy.contract.preprocess import preprocess
from han_deploy.data.records import DatasetSplits, Record
from han_deploy.model import create_model, load_checkpoint, read_checkpoint_header
from han_deploy.train import TrainConfig, Trainer, han_losses
from han_deploy.train.cli import main as train_main
from han_deploy.train.state import load_state
from han_deploy.train.trainer import relabel_subset

FAST = {"variant": "small", "batch_size": 16, "threads": 1}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of han-train (with evaluation) on the tiny dataset."""
    root = tiny_dataset(tmp_path_factory)
    out = tmp_path_factory.mktemp("run")
    argv = ["--data", str(root), "--dataset", "market_layout", "--variant", "small", "--epochs", "1", "--batch-size", "16"]
    argv += ["--eval-every", "1", "--threads", "1", "--output", str(out)]
    assert train_main(argv) == 0
    return out


def test_cli_writes_log_curves_checkpoints_and_state(
    cli_run: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [json.loads(line) for line in (cli_run / "train_log.jsonl").read_text().splitlines()]
    assert len(entries) == 1
    e = entries[0]
    assert e["epoch"] == 1 and e["lr"] == pytest.approx(3e-2)
    assert set(e["loss"]) == {"ce_global", "ce_local", "total"}
    assert e["loss"]["total"] == pytest.approx(e["loss"]["ce_global"] + e["loss"]["ce_local"])
    assert set(e["train_acc"]) == {"global", "local"} and e["images_per_s"] > 0 and e["skipped_images"] == 0
    assert set(e["eval"]) >= {"R1", "R5", "R10", "mAP", "mINP"}
    assert (cli_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg, meta = read_checkpoint_header(cli_run / "last.safetensors")
    assert cfg.variant == "small" and cfg.num_classes == 8
    assert meta["epoch"] == 1 and meta["dataset"] == "market_layout" and meta["num_classes"] == 8
    assert meta["command"].startswith("han-train --data") and meta["metrics"]["mAP"] == e["eval"]["mAP"]
    argv = ["--data", str(tiny_dataset(tmp_path_factory)), "--dataset", "market_layout", "--output", str(cli_run)]
    assert train_main(argv) == 2 and "already holds a run" in capsys.readouterr().err  # never clobbers a run
    model, _ = load_checkpoint(cli_run / "best.safetensors")
    assert model.num_classes == 8
    state = load_state(cli_run / "last.state.pt")  # torch.load(weights_only=True) inside
    assert state["epoch"] == 1 and "optimizer" in state and "scheduler" in state
    assert not list(cli_run.glob("*.tmp*"))  # atomic writes leave no temporaries


def test_loss_falls_when_overfitting_one_small_batch(tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = tiny_splits(tmp_path_factory)
    recs = [next(r for r in splits.train if r.pid == pid) for pid in range(4)]
    recs += [[r for r in splits.train if r.pid == pid][1] for pid in range(4)]
    torch.manual_seed(0)
    model = create_model("small", num_classes=4).train()
    x = torch.from_numpy(preprocess([read_image(r.path) for r in recs], model.cfg.preprocess))
    y = torch.tensor([r.pid for r in recs])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(20):
        loss = sum(han_losses(model(x), y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize(
    "extra",
    [{"milestones": (1,), "random_erasing": 0.5}, FAST_RECIPE, dict(FAST_RECIPE, cache=False), dict(FAST_RECIPE, amp=True)],
    ids=["paper-steps", "fast-cosine", "fast-cosine-from-disk", "fast-cosine-bf16"],
)
def test_resume_continues_exactly(extra: dict, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    splits = relabel_subset(tiny_splits(tmp_path_factory), 32, seed=1)  # 2 batches of 16 per epoch
    common = dict(FAST, epochs=2, seed=7, dataset="tiny", **extra)
    straight = Trainer(TrainConfig(output=str(tmp_path / "a"), **common), splits).fit()
    Trainer(TrainConfig(output=str(tmp_path / "b"), **common), splits).fit(stop_after=1)  # "killed" after epoch 1
    resumed = Trainer(TrainConfig(output=str(tmp_path / "b"), **common), splits, resume=True).fit()
    a, _ = load_checkpoint(straight.last_checkpoint)
    b, meta = load_checkpoint(resumed.last_checkpoint)
    assert meta["epoch"] == 2
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    log_a = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in log_a] == [json.loads(x)["loss"] for x in log_b]
    lrs = [json.loads(x)["lr"] for x in log_b]
    if "schedule" in extra:  # warm-up from 1% of the lr, then the cosine (per iteration) mid-way down
        assert lrs[0] == pytest.approx(3e-2 * 0.01) and 3e-2 > lrs[1] > 3e-2 * 0.01
    else:
        assert lrs == pytest.approx([3e-2, 3e-3])
    invocations = json.loads((tmp_path / "b" / "config.json").read_text())["invocations"]
    assert [i["start_epoch"] for i in invocations] == [1, 2]


def test_resume_without_state_names_the_missing_file(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(FileNotFoundError, match="last.state.pt"):
        Trainer(TrainConfig(output=str(tmp_path), **FAST), tiny_splits(tmp_path_factory), resume=True)


def test_empty_training_split_stops_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="training split is empty"):
        Trainer(TrainConfig(output=str(tmp_path / "o"), **FAST), DatasetSplits("empty"))
    for d in ("bounding_box_train", "bounding_box_test", "query"):
        (tmp_path / "data" / d).mkdir(parents=True)
    code = train_main(["--data", str(tmp_path / "data"), "--dataset", "market_layout", "--output", str(tmp_path / "o")])
    assert code == 2 and "empty" in capsys.readouterr().err


@pytest.mark.parametrize("cache", [True, False], ids=["decoded-once", "from-disk"])
def test_corrupt_and_missing_images_are_reported_by_path_and_skipped(
    cache: bool, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    splits = tiny_splits(tmp_path_factory)
    corrupt = tmp_path / "0001_c1s1_000001_00.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a jpeg")
    missing = tmp_path / "0002_c1s1_000002_00.jpg"
    bad = DatasetSplits("bad", splits.train + [Record(corrupt, 0, 0), Record(missing, 1, 0)], splits.query, splits.gallery)
    cfg = TrainConfig(
        output=str(tmp_path / "run"), epochs=1, batch_size=13, cache=cache, **{k: v for k, v in FAST.items() if k != "batch_size"}
    )
    with caplog.at_level(logging.WARNING):
        result = Trainer(cfg, bad).fit()
    assert str(corrupt) in caplog.text and str(missing) in caplog.text
    assert result.last_entry["skipped_images"] == 2  # batch 13 over 52 images: no image is dropped by drop_last
    assert result.last_entry["images"] == 50
    with pytest.raises(DecodeError, match="0002_c1s1.*no such file"):
        read_image(missing)
    with pytest.raises(DecodeError, match="0001_c1s1.*corrupt JPEG"):
        read_image(corrupt)


REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhk03-pair1"


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="real CUHK03 pair data not present (../shared/data/cuhk03-pair1)")
def test_trains_a_few_steps_on_real_cuhk03_pair(tmp_path: Path) -> None:
    argv = ["--data", str(REAL), "--dataset", "cuhk03_pair", "--variant", "small", "--epochs", "1", "--max-images", "48"]
    argv += ["--batch-size", "16", "--threads", "1", "--output", str(tmp_path)]
    assert train_main(argv) == 0
    _, meta = read_checkpoint_header(tmp_path / "last.safetensors")
    assert meta["dataset"] == "cuhk03_pair" and meta["epoch"] == 1
    shutil.rmtree(tmp_path)  # nothing derived from the real images stays behind


def test_cli_triplet_pk_erasing_and_amp(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    argv = ["--data", str(tiny_dataset(tmp_path_factory)), "--dataset", "market_layout", "--variant", "small", "--epochs", "1"]
    argv += ["--max-images", "24", "--batch-size", "8", "--triplet", "0.3", "--instances", "2", "--random-erasing", "0.5"]
    argv += ["--amp", "--threads", "1", "--output", str(tmp_path)]
    assert train_main(argv) == 0
    entry = json.loads((tmp_path / "train_log.jsonl").read_text())
    assert set(entry["loss"]) == {"ce_global", "ce_local", "tri_global", "tri_local", "total"}
    assert entry["images"] % 8 == 0  # whole P x K batches only
    cfg = json.loads((tmp_path / "config.json").read_text())["train"]
    assert cfg["triplet_margin"] == 0.3 and cfg["amp"] is True and cfg["random_erasing"] == 0.5
