"""The training loop: the paper's recipe by default (docs/training.md), resumable, logged, checkpointed.

Per epoch it appends one JSON line to ``train_log.jsonl``, redraws ``curves.png``, writes
``last.safetensors`` (weights + config + training metadata) and ``last.state.pt`` (everything a resume
needs), and ``best.safetensors`` when an evaluation improves the headline mAP. Data order and
augmentation are drawn from generators seeded by ``(seed, epoch)``, so ``--resume`` replays exactly
the epochs a killed run had not finished. By default the training crops are decoded once into memory
and the model runs in channels-last memory format (docs/training.md, "Speed").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import statistics
import time
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler
from tqdm.auto import tqdm

from ..data.records import DatasetSplits, Record
from ..evaluate.protocol import headline
from ..evaluate.torch_eval import evaluate_model
from ..model import HAN, create_model, save_checkpoint
from .augment import BatchAugment
from .curves import plot_curves, read_log
from .dataset import ReidDataset, collate_skip_bad
from .heap import retain_freed_memory
from .losses import han_losses
from .memory_cache import ImageCache
from .precision import autocast, keep_strided_depthwise_float32, native_bf16
from .sampler import PKSampler
from .schedule import PAPER_EPOCHS, fit_epochs, refit_plan, scaled_milestones, warmup_cosine
from .state import STATE_NAME, load_state, save_state

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine")
RECENT_EPOCHS = 5  # a budget plan estimates the epochs to come from the median of this many recent ones
# options a resume may change without a warning: the plan's length, where and how fast it runs, its bookkeeping
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "budget_minutes", "milestones", "command", "output", "threads", "workers", "device", "eval_every"}
    | {"cache", "retain_heap"}
)


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults are the paper's recipe."""

    variant: str = "medium"
    model_overrides: dict[str, Any] = field(default_factory=dict)  # block, feature, ablation switches
    recipe: str = "paper"  # the name of the preset the values below came from (recorded, not acted on)
    epochs: int = PAPER_EPOCHS
    budget_minutes: float | None = None  # fit the number of epochs (at most ``epochs``) to this many wall minutes
    optimizer: str = "sgd"
    lr: float = 3e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    schedule: str = "step"
    milestones: tuple[int, ...] | None = None  # step schedule; None: the paper's, scaled to the run's epochs
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # cosine schedule: linear warm-up length
    label_smoothing: float = 0.0
    flip: bool = False
    pad: int = 0
    random_erasing: float = 0.0
    triplet_margin: float | None = None
    instances_per_id: int = 4  # K of the PK sampler (triplet only); P = batch_size // K
    amp: bool = False
    channels_last: bool = True
    cache: bool = True  # decode the training split once into memory
    retain_heap: bool = False  # CPU: keep freed tensor memory in the process (heap.retain_freed_memory; han-train's default)
    device: str = "cpu"
    workers: int = 0
    threads: int | None = None
    eval_every: int = 0
    both_directions: bool = False  # two-camera protocol: evaluate a->b, b->a and their mean
    eval_label: str = "test"  # what the query/gallery are: "test", or "validation" (--val-ids)
    seed: int = 0
    output: str = "runs/train"
    dataset: str = ""
    command: str = ""

    def resolved_milestones(self, epochs: int | None = None) -> tuple[int, ...]:
        return tuple(self.milestones) if self.milestones is not None else scaled_milestones(epochs or self.epochs)

    def check(self) -> None:
        """Refuse values that would only fail (or silently do nothing) later, naming the option."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise ValueError(f"--budget-minutes must be positive, got {self.budget_minutes}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.pad < 0 or self.warmup_epochs < 0 or self.epochs < 1:
            raise ValueError("--pad and --warmup-epochs must be >= 0 and --epochs >= 1")
        if self.triplet_margin is not None and self.batch_size % self.instances_per_id:
            raise ValueError(f"with --triplet, --batch-size {self.batch_size} must be a multiple of --instances")

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


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or Adam, both with L2 weight decay, multi-tensor (foreach) updates."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)


class Trainer:
    """Build with a config and the dataset splits; :meth:`fit` trains (or resumes) and returns a :class:`TrainResult`.

    A fresh run (``resume=False``) removes the log, best checkpoint and resume state of an earlier run in
    the same output folder; ``han-train`` refuses such a folder unless told ``--resume`` or ``--overwrite``.
    """

    def __init__(self, cfg: TrainConfig, splits: DatasetSplits, resume: bool = False) -> None:
        cfg.check()
        self.cfg, self.splits = cfg, splits
        self.num_classes = check_train_split(splits.train)
        if cfg.eval_every and (not splits.query or not splits.gallery):
            raise ValueError("--eval-every needs a query and a gallery split, and this dataset has an empty one")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device)
        if cfg.retain_heap and self.device.type == "cpu":
            log.info("freed tensor memory kept for reuse: %s", retain_freed_memory())
        self.out = Path(cfg.output)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model = create_model(cfg.variant, num_classes=self.num_classes, **cfg.model_overrides)
        self.model: HAN = model.to(self.device, memory_format=self.memory_format)
        if cfg.amp and self.device.type == "cpu":
            kept = keep_strided_depthwise_float32(model)
            log.info("bf16 autocast; strided depthwise convolutions kept float32: %d", kept)
            if native_bf16() is False:
                log.warning("--amp: this CPU has neither AVX512-BF16 nor AMX, so bf16 is emulated and likely slower")
        self.optimizer = build_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp and self.device.type == "cuda" else None
        self.augment = BatchAugment(cfg.flip, cfg.pad, cfg.random_erasing)
        self.dataset = ReidDataset(splits.train, self.model.cfg.preprocess, split="train")
        self.train_pids = np.array([r.pid for r in splits.train])
        self.iters_per_epoch = max(1, sum(1 for _ in self._index_batches(1)))
        self.planned_epochs = cfg.epochs  # refitted to the budget after each epoch when there is one
        self.milestones = list(cfg.resolved_milestones(self.planned_epochs))  # step schedule; follows the plan
        self.spent_s = 0.0  # budget bookkeeping: all wall seconds spent
        self.epoch_costs: list[float] = []  # wall seconds of each whole epoch (training, checkpoints, periodic evaluations)
        self.eval_s: float | None = None
        self.scheduler = self._build_scheduler()
        self.start_epoch = 1
        self.best_map = -1.0
        self.log_path = self.out / "train_log.jsonl"
        if resume:
            self._resume()
        else:  # a fresh run: files of an earlier run in this folder would mislead (han-train asks before this)
            for stale in (self.log_path, self.out / "best.safetensors", self.out / STATE_NAME):
                stale.unlink(missing_ok=True)
        self._write_config()
        start = time.perf_counter()
        self.cache = ImageCache.build([r.path for r in splits.train], self.model.cfg.preprocess) if cfg.cache else None
        self.spent_s += time.perf_counter() - start

    def _build_scheduler(self) -> torch.optim.lr_scheduler.LambdaLR:
        """Per-epoch steps (x gamma per milestone passed), or per-iteration warm-up + cosine over the planned epochs.

        Both factors are closed forms of the scheduler's counter and the current plan, so a plan that
        shrinks (budget) or a resume never skips a decay or replays one.
        """
        if self.cfg.schedule == "step":
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda epoch: self.cfg.gamma ** bisect_right(self.milestones, epoch)
            )
        warmup = round(self.cfg.warmup_epochs * self.iters_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: warmup_cosine(it, warmup, self.planned_epochs * self.iters_per_epoch)
        )

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
        self._check_resumable(state["extra"].get("run", {}))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ValueError(f"cannot resume from {self.out / STATE_NAME}: it does not match this run ({exc})") from exc
        budget = state["extra"].get("budget", {})
        self.spent_s = float(budget.get("spent_s", 0.0))
        done = int(state["epoch"])  # a state written before per-epoch costs were kept holds only their sum
        costs = budget.get("epoch_costs", [float(budget.get("epochs_s", 0.0)) / max(done, 1)] * done)
        self.epoch_costs = [float(c) for c in costs]
        self.eval_s = budget.get("eval_s")
        if self.cfg.budget_minutes is not None and "planned_epochs" in budget:
            self.planned_epochs = min(self.cfg.epochs, int(budget["planned_epochs"]))
            if budget.get("budget_minutes") != self.cfg.budget_minutes and int(state["epoch"]):  # a new budget
                self._replan(int(state["epoch"]), fresh=True)
        # the schedule of *this* invocation wins, so a resumed run can be shortened or extended
        self.milestones[:] = self.cfg.resolved_milestones(self.planned_epochs)
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

    def _check_resumable(self, saved: dict[str, Any]) -> None:
        """Refuse a state of another dataset, class count, schedule, optimizer, batch size or seed, naming it.

        Other training options may change on resume (a longer plan, a new budget), but one that changes
        what is learned (weight decay, augmentation, a recipe preset whose values moved) is logged as a
        warning with its old and new value, so a resumed run never changes recipe silently.
        """
        now = self._run_info()
        pairs = [(key, saved.get(key), now[key]) for key in ("num_classes", "dataset")]
        train_keys = ("schedule", "optimizer", "batch_size", "seed")
        pairs += [(key, saved.get("train", {}).get(key), now["train"][key]) for key in train_keys]
        for key, was, is_now in pairs:
            if was != is_now:
                raise ValueError(f"cannot resume: {key} was {was!r} in {self.out / STATE_NAME}, now {is_now!r}")
        before = saved.get("train", {})
        changed = [
            f"{key} {before[key]!r} -> {value!r}"
            for key, value in now["train"].items()
            if key in before and before[key] != value and key not in RESUME_MAY_CHANGE
        ]
        if changed:
            log.warning("resuming %s with changed training options, applied from now on: %s", self.out, "; ".join(changed))

    def _sampler(self, epoch: int) -> Sampler[int]:
        cfg = self.cfg
        if cfg.triplet_margin is not None:
            k = cfg.instances_per_id
            sampler = PKSampler(self.train_pids.tolist(), cfg.batch_size // k, k, cfg.seed)
            sampler.set_epoch(epoch)
            return sampler
        return RandomSampler(self.dataset, generator=_epoch_generator(cfg.seed, epoch, 0))

    def _index_batches(self, epoch: int) -> Iterator[list[int]]:
        """The dataset indices of each batch of ``epoch``: whole batches only, unless the epoch holds one (smaller) batch."""
        order = list(self._sampler(epoch))
        size = self.cfg.batch_size
        stop = len(order) - len(order) % size if len(order) > size else len(order)  # a last batch of 1 breaks BN
        for i in range(0, stop, size):
            yield order[i : i + size]

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """``(images, pids, skipped)`` per batch, from the decoded-once cache or from files via a DataLoader."""
        if self.cache is not None:
            for idx in self._index_batches(epoch):
                good = [i for i in idx if self.cache.ok[i]]
                yield self.cache.batch(good), torch.from_numpy(self.train_pids[good]), len(idx) - len(good)
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=list(self._index_batches(epoch)),
            num_workers=self.cfg.workers,
            collate_fn=collate_skip_bad,
        )
        for batch in loader:
            yield batch.images, batch.pids, batch.skipped

    def _step(self, images: torch.Tensor, pids: torch.Tensor) -> tuple[dict[str, torch.Tensor], Any]:
        """One optimisation step on a batch; returns the loss terms (their sum is what was minimised) and outputs."""
        cfg = self.cfg
        images = images.to(self.device).contiguous(memory_format=self.memory_format)
        with autocast(cfg.amp, self.device):
            out = self.model(images)
        losses = han_losses(out, pids, cfg.triplet_margin, cfg.label_smoothing)
        total = torch.stack(list(losses.values())).sum()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            total.backward()
            self.optimizer.step()
        if cfg.schedule == "cosine":
            self.scheduler.step()
        return losses | {"total": total}, out

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        self.model.train()
        augment_gen = _epoch_generator(self.cfg.seed, epoch, 2)
        sums: dict[str, float] = {}
        correct = {"global": 0, "local": 0}
        seen = skipped = 0
        start, cpu_start = time.perf_counter(), time.process_time()
        bar = tqdm(
            self._batches(epoch),
            total=self.iters_per_epoch,
            desc=f"epoch {epoch}/{self.planned_epochs}",
            unit="batch",
            leave=False,
        )
        for images, pids, bad in bar:
            skipped += bad
            n = len(pids)
            if n < 2:  # nothing readable (or a single image, which BatchNorm cannot train on)
                continue
            if self.augment.active:
                images = self.augment(images, augment_gen)
            pids = pids.to(self.device)
            losses, out = self._step(images, pids)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item() * n
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
            "epochs": self.planned_epochs,
            "dataset": self.cfg.dataset or self.splits.name,
            "num_classes": self.num_classes,
            "metrics": entry.get("eval", {}),
            "metrics_split": self.cfg.eval_label,
            "train_loss": entry["loss"]["total"],
            "command": self.cfg.command,
            "train_config": self.cfg.to_dict(),
        }

    def _wants_eval(self, epoch: int) -> bool:
        """Every ``eval_every`` epochs, and at the last epoch when evaluating at all or running on a budget."""
        if not self.splits.query or not self.splits.gallery:
            return False
        last = epoch == self.planned_epochs and (self.cfg.eval_every > 0 or self.cfg.budget_minutes is not None)
        return last or (self.cfg.eval_every > 0 and epoch % self.cfg.eval_every == 0)

    def _evaluate(self, entry: dict[str, Any]) -> None:
        start = time.perf_counter()
        results = evaluate_model(
            self.model, self.splits, both_directions=self.cfg.both_directions, device=self.device, workers=self.cfg.workers
        )
        self.eval_s = time.perf_counter() - start
        entry["eval"] = headline(results)
        entry["eval_all"] = results
        direction = "mean of a->b and b->a" if self.cfg.both_directions else "query -> gallery"
        entry["eval_label"] = f"{self.cfg.eval_label}: {direction}"

    def _replan(self, done: int, fresh: bool = False) -> None:
        """With a budget, refit the run's length to the recent epoch time (docs/training.md "--budget-minutes").

        The median of the last few epochs estimates the epochs to come, so a passing slowdown (a busy host)
        neither shortens the run for good nor is ignored while it lasts (:func:`refit_plan`; ``fresh``: refit freely).
        """
        if self.cfg.budget_minutes is None or (done >= self.planned_epochs and not fresh):
            return
        epoch_s = statistics.median(self.epoch_costs[-RECENT_EPOCHS:])
        images = len(self.splits.query) + len(self.splits.gallery)
        # without a measured evaluation, estimate it at the training rate (inference is faster: a margin)
        final_eval = self.eval_s if self.eval_s is not None else images * epoch_s / len(self.splits.train)
        fitted = fit_epochs(self.cfg.budget_minutes * 60, self.spent_s, done, epoch_s, final_eval, self.cfg.epochs)
        self.planned_epochs = fitted if fresh else refit_plan(self.planned_epochs, fitted)
        self.milestones[:] = self.cfg.resolved_milestones(self.planned_epochs)

    def _save(self, epoch: int, entry: dict[str, Any]) -> None:
        """Log line, last (and best) checkpoint, resume state and curves after ``epoch``."""
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        meta = self._meta(epoch, entry)
        save_checkpoint(self.out / "last.safetensors", self.model, meta)
        if "eval" in entry and entry["eval"]["mAP"] > self.best_map:
            self.best_map = entry["eval"]["mAP"]
            save_checkpoint(self.out / "best.safetensors", self.model, meta)
        budget = {"budget_minutes": self.cfg.budget_minutes, "planned_epochs": self.planned_epochs}
        budget |= {"spent_s": self.spent_s, "epoch_costs": self.epoch_costs, "eval_s": self.eval_s}
        extra = {"best_map": self.best_map, "run": self._run_info(), "budget": budget}
        save_state(self.out / STATE_NAME, self.model, self.optimizer, self.scheduler, epoch, extra, self.scaler)
        plot_curves(read_log(self.log_path), self.out / "curves.png", title=f"HAN-{self.model.cfg.variant} on {meta['dataset']}")

    def fit(self, stop_after: int | None = None) -> TrainResult:
        """Train from the start (or the resumed) epoch to the planned end; ``stop_after`` ends early (as a kill would)."""
        entry: dict[str, Any] = {}
        last, best = self.out / "last.safetensors", self.out / "best.safetensors"
        epoch = self.start_epoch
        while epoch <= self.planned_epochs and (stop_after is None or epoch <= stop_after):
            start = time.perf_counter()
            entry = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], **self._train_epoch(epoch)}
            if self.cfg.schedule == "step":
                self.scheduler.step()
            train_s = time.perf_counter() - start
            self.spent_s += train_s
            self.epoch_costs.append(train_s)
            self._replan(epoch)
            start = time.perf_counter()
            if self._wants_eval(epoch):
                self._evaluate(entry)
            entry["planned_epochs"] = self.planned_epochs
            entry["budget_spent_s"] = self.spent_s + time.perf_counter() - start  # then the checkpoint writes
            self._save(epoch, entry)
            rest = time.perf_counter() - start
            self.spent_s += rest
            # an epoch's cost for the plan: training, checkpoint writes and periodic evaluations (not the final one)
            self.epoch_costs[-1] += rest - ((self.eval_s or 0.0) if epoch == self.planned_epochs else 0.0)
            tqdm.write(self._summary(entry))
            epoch += 1
        if not entry and not last.exists():
            raise RuntimeError(f"nothing to do: epoch {self.start_epoch} is past the planned {self.planned_epochs} epochs")
        if not entry:
            entry = read_log(self.log_path)[-1] if self.log_path.exists() else {}
        return TrainResult(self.out, last, best if best.exists() else None, entry)

    def _summary(self, entry: dict[str, Any]) -> str:
        acc = entry["train_acc"]
        text = f"epoch {entry['epoch']}/{self.planned_epochs}: loss {entry['loss']['total']:.4f}"
        text += f", train acc g/l {acc['global']:.3f}/{acc['local']:.3f}, {entry['images_per_s']:.1f} img/s"
        if "eval" in entry:
            ev = entry["eval"]
            text += f", {self.cfg.eval_label} R1 {ev['R1']:.3f} mAP {ev['mAP']:.3f} mINP {ev['mINP']:.3f}"
        if self.cfg.budget_minutes is not None:
            text += f", {self.spent_s / 60:.1f}/{self.cfg.budget_minutes:g} budget minutes"
        if entry["skipped_images"]:
            text += f", {entry['skipped_images']} unreadable images skipped"
        return text


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
