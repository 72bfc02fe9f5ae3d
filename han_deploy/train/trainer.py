"""The training loop: the paper's recipe by default (DESIGN.md §3), resumable, logged, checkpointed.

Per epoch it appends one JSON line to ``train_log.jsonl``, redraws ``curves.png``, writes
``last.safetensors`` (weights + config + training metadata) and ``last.state.pt`` (everything a resume
needs), and ``best.safetensors`` when an evaluation improves the headline mAP. Data order and
augmentation are drawn from generators seeded by ``(seed, epoch)``, so ``--resume`` replays exactly
the epochs a killed run had not finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler
from tqdm.auto import tqdm

from ..data.records import DatasetSplits, Record
from ..model import HAN, create_model, save_checkpoint
from .augment import random_erasing
from .curves import plot_curves, read_log
from .dataset import ReidDataset, collate_skip_bad
from .evaluation import evaluate_model, headline
from .losses import han_losses
from .sampler import PKSampler
from .state import STATE_NAME, load_state, save_state

log = logging.getLogger(__name__)

PAPER_EPOCHS = 300
PAPER_MILESTONES = (100, 200, 250)


def scaled_milestones(epochs: int) -> tuple[int, ...]:
    """The paper's lr steps (100/200/250 of 300 epochs) scaled to ``epochs``; exact for 300."""
    steps = sorted({max(1, round(m * epochs / PAPER_EPOCHS)) for m in PAPER_MILESTONES})
    return tuple(m for m in steps if m < epochs) if epochs > 1 else ()


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the paper's recipe."""

    variant: str = "medium"
    model_overrides: dict[str, Any] = field(default_factory=dict)  # block, feature, ablation switches
    epochs: int = PAPER_EPOCHS
    lr: float = 3e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    milestones: tuple[int, ...] | None = None  # None: the paper's, scaled to ``epochs``
    gamma: float = 0.1
    random_erasing: float = 0.0
    triplet_margin: float | None = None
    instances_per_id: int = 4  # K of the PK sampler (triplet only); P = batch_size // K
    amp: bool = False
    device: str = "cpu"
    workers: int = 0
    threads: int | None = None
    eval_every: int = 0
    both_directions: bool = False  # two-camera protocol: evaluate a->b, b->a and their mean
    seed: int = 0
    output: str = "runs/train"
    dataset: str = ""
    command: str = ""

    def resolved_milestones(self) -> tuple[int, ...]:
        return tuple(self.milestones) if self.milestones is not None else scaled_milestones(self.epochs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.resolved_milestones())
        return d


@dataclass
class TrainResult:
    """Where a run left its files, and its last log entry."""

    output: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    last_entry: dict[str, Any]


def check_train_split(records: list[Record]) -> int:
    """Number of classes of a relabelled training split; a clear error if it is empty or not relabelled."""
    if not records:
        raise ValueError("the training split is empty: no images to train on (check --data and --dataset)")
    pids = sorted({r.pid for r in records})
    if pids[0] < 0 or pids != list(range(len(pids))):
        raise ValueError(f"training pids must be relabelled to 0..K-1, got {len(pids)} ids in [{pids[0]}, {pids[-1]}]")
    if len(pids) < 2:
        raise ValueError("the training split has a single identity: classification needs at least 2")
    return len(pids)


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0]))


def _autocast(cfg: TrainConfig, device: torch.device):
    if not cfg.amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


class Trainer:
    """Build with a config and the dataset splits; :meth:`fit` trains (or resumes) and returns a :class:`TrainResult`.

    A fresh run (``resume=False``) removes the log, best checkpoint and resume state of an earlier run in
    the same output folder; ``han-train`` refuses such a folder unless told ``--resume`` or ``--overwrite``.
    """

    def __init__(self, cfg: TrainConfig, splits: DatasetSplits, resume: bool = False) -> None:
        self.cfg, self.splits = cfg, splits
        self.num_classes = check_train_split(splits.train)
        if cfg.eval_every and (not splits.query or not splits.gallery):
            raise ValueError("--eval-every needs a query and a gallery split, and this dataset has an empty one")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device)
        self.out = Path(cfg.output)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.model: HAN = create_model(cfg.variant, num_classes=self.num_classes, **cfg.model_overrides).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.resolved_milestones()), gamma=cfg.gamma
        )
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp and self.device.type == "cuda" else None
        self.dataset = ReidDataset(splits.train, self.model.cfg.preprocess, split="train")
        self.start_epoch = 1
        self.best_map = -1.0
        self.log_path = self.out / "train_log.jsonl"
        if resume:
            self._resume()
        else:  # a fresh run: files of an earlier run in this folder would mislead (han-train asks before this)
            for stale in (self.log_path, self.out / "best.safetensors", self.out / STATE_NAME):
                stale.unlink(missing_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        """``config.json``: this invocation's config, plus every invocation (command, first epoch) of the run."""
        path = self.out / "config.json"
        history = json.loads(path.read_text()).get("invocations", []) if self.start_epoch > 1 and path.exists() else []
        history.append({"command": self.cfg.command, "start_epoch": self.start_epoch, "epochs": self.cfg.epochs})
        path.write_text(json.dumps(self._run_info() | {"invocations": history}, indent=2) + "\n")

    def _run_info(self) -> dict[str, Any]:
        return {
            "train": self.cfg.to_dict(),
            "model": self.model.cfg.to_dict(),
            "dataset": self.cfg.dataset or self.splits.name,
            "num_classes": self.num_classes,
            "train_images": len(self.splits.train),
            "query_images": len(self.splits.query),
            "gallery_images": len(self.splits.gallery),
            "torch": str(torch.__version__),  # TorchVersion would not load with weights_only=True
        }

    def _resume(self) -> None:
        state = load_state(self.out / STATE_NAME)
        saved = state["extra"].get("run", {})
        for key in ("num_classes", "dataset"):
            if saved.get(key) != self._run_info()[key]:
                now = self._run_info()[key]
                raise ValueError(f"cannot resume: {key} was {saved.get(key)!r} in {self.out / STATE_NAME}, now {now!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the schedule of *this* invocation wins, so a resumed run can be shortened or extended (--epochs/--milestones)
        self.scheduler.milestones = Counter(self.cfg.resolved_milestones())
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best_map = float(state["extra"].get("best_map", -1.0))
        if self.log_path.exists():  # drop entries of epochs after the state (killed between log and state writes)
            lines = [ln for ln in self.log_path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["epoch"] < self.start_epoch]
            self.log_path.write_text("".join(ln + "\n" for ln in kept))
        log.info("resuming %s after epoch %d", self.out, self.start_epoch - 1)

    def _loader(self, epoch: int) -> DataLoader:
        cfg = self.cfg
        sampler: Sampler[int]
        if cfg.triplet_margin is not None:
            k = cfg.instances_per_id
            sampler = PKSampler([r.pid for r in self.splits.train], cfg.batch_size // k, k, cfg.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(self.dataset, generator=_epoch_generator(cfg.seed, epoch, 0))
        return DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            collate_fn=collate_skip_bad,
            drop_last=len(self.dataset) > cfg.batch_size,  # a last batch of 1 breaks BatchNorm
            generator=_epoch_generator(cfg.seed, epoch, 1),
        )

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, model = self.cfg, self.model
        model.train()
        erase_gen = _epoch_generator(cfg.seed, epoch, 2)
        sums: dict[str, float] = {}
        correct = {"global": 0, "local": 0}
        seen = skipped = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        bar = tqdm(self._loader(epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False)
        for batch in bar:
            skipped += batch.skipped
            n = len(batch.pids)
            if n < 2:  # nothing readable (or a single image, which BatchNorm cannot train on)
                continue
            images, pids = batch.images, batch.pids.to(self.device)
            if cfg.random_erasing > 0:
                images = random_erasing(images, cfg.random_erasing, erase_gen)
            with _autocast(cfg, self.device):
                out = model(images.to(self.device))
            losses = han_losses(out, pids, cfg.triplet_margin)
            total = torch.stack(list(losses.values())).sum()
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                total.backward()
                self.optimizer.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item() * n
            sums["total"] = sums.get("total", 0.0) + total.item() * n
            correct["global"] += int((out.global_logits.argmax(1) == pids).sum())
            correct["local"] += int((out.local_logits.argmax(1) == pids).sum())
            seen += n
            bar.set_postfix(loss=f"{sums['total'] / seen:.3f}", skipped=skipped)
        bar.close()
        if seen == 0:
            raise RuntimeError(f"epoch {epoch} trained on no image: all {skipped} images read were unreadable (see warnings)")
        seconds = time.perf_counter() - start
        return {
            "loss": {k: v / seen for k, v in sums.items()},
            "train_acc": {k: v / seen for k, v in correct.items()},
            "images": seen,
            "skipped_images": skipped,
            "seconds": seconds,
            "cpu_seconds": time.process_time() - cpu_start,  # with wall seconds, tells how loaded the machine was
            "images_per_s": seen / seconds,
        }

    def _meta(self, epoch: int, entry: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "epochs": self.cfg.epochs,
            "dataset": self.cfg.dataset or self.splits.name,
            "num_classes": self.num_classes,
            "metrics": entry.get("eval", {}),
            "train_loss": entry["loss"]["total"],
            "command": self.cfg.command,
            "train_config": self.cfg.to_dict(),
        }

    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train from the start (or the resumed) epoch to ``cfg.epochs``; ``stop_after`` ends early (as a kill would)."""
        cfg = self.cfg
        entry: dict[str, Any] = {}
        last = self.out / "last.safetensors"
        best = self.out / "best.safetensors"
        last_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
        for epoch in range(self.start_epoch, last_epoch + 1):
            lr = self.optimizer.param_groups[0]["lr"]
            entry = {"epoch": epoch, "lr": lr, **self._train_epoch(epoch)}
            self.scheduler.step()
            if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                results = evaluate_model(
                    self.model, self.splits, both_directions=cfg.both_directions, device=self.device, workers=cfg.workers
                )
                entry["eval"] = headline(results)
                entry["eval_all"] = results
                entry["eval_label"] = "test: mean of a->b and b->a" if cfg.both_directions else "test: query -> gallery"
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            meta = self._meta(epoch, entry)
            save_checkpoint(last, self.model, meta)
            if "eval" in entry and entry["eval"]["mAP"] > self.best_map:
                self.best_map = entry["eval"]["mAP"]
                save_checkpoint(best, self.model, meta)
            extra = {"best_map": self.best_map, "run": self._run_info()}
            save_state(self.out / STATE_NAME, self.model, self.optimizer, self.scheduler, epoch, extra, self.scaler)
            title = f"HAN-{self.model.cfg.variant} on {meta['dataset']}"
            plot_curves(read_log(self.log_path), self.out / "curves.png", title=title)
            acc = entry["train_acc"]
            summary = f"epoch {epoch}: loss {entry['loss']['total']:.4f}, train acc g/l {acc['global']:.3f}/{acc['local']:.3f}"
            summary += f", {entry['images_per_s']:.1f} img/s"
            if "eval" in entry:
                ev = entry["eval"]
                summary += f", R1 {ev['R1']:.3f} mAP {ev['mAP']:.3f} mINP {ev['mINP']:.3f}"
            if entry["skipped_images"]:
                summary += f", {entry['skipped_images']} unreadable images skipped"
            tqdm.write(summary)
        if not entry and not last.exists():
            raise RuntimeError(f"nothing to do: epoch {self.start_epoch} > --epochs {cfg.epochs} and no checkpoint in {self.out}")
        if not entry:
            entry = read_log(self.log_path)[-1] if self.log_path.exists() else {}
        return TrainResult(self.out, last, best if best.exists() else None, entry)


def train(splits: DatasetSplits, cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Train HAN on ``splits`` with ``cfg`` (see :class:`Trainer`)."""
    return Trainer(cfg, splits, resume=resume).fit(stop_after=stop_after)


def relabel_subset(splits: DatasetSplits, max_images: int, seed: int = 0) -> DatasetSplits:
    """A quick-run copy of ``splits``: ``max_images`` training images drawn at random (seeded), pids relabelled."""
    if max_images >= len(splits.train):
        return splits
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(splits.train), size=max_images, replace=False).tolist())
    records = [splits.train[i] for i in chosen]
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    train_recs = [Record(r.path, mapping[r.pid], r.camid) for r in records]
    return DatasetSplits(splits.name, train_recs, list(splits.query), list(splits.gallery))
