"""``han-train``: train HAN on a re-id dataset with the paper's recipe, the CPU-budget recipe, or a variant (docs/training.md)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from ..evaluate.cli import TWO_DIRECTION_DATASETS
from .recipes import RECIPES, recipe_defaults
from .schedule import PAPER_EPOCHS
from .state import STATE_NAME
from .trainer import OPTIMIZERS, SCHEDULES, TrainConfig, relabel_subset, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-train",
        description="Train a HAN person re-id model. Defaults are the paper's recipe: per-branch softmax cross-entropy "
        "summed, SGD lr 3e-2 momentum 0.9 weight decay 5e-4, batch 32, 300 epochs, lr x0.1 at 100/200/250, no augmentation. "
        "--recipe fast --budget-minutes N trains for a fixed budget of wall minutes instead (docs/training.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_data_args(p.add_argument_group("data"))
    _add_model_args(p.add_argument_group("model"))
    _add_optim_args(p.add_argument_group("optimisation"))
    _add_run_args(p.add_argument_group("run"))
    return p


def _add_data_args(d: argparse._ArgumentGroup) -> None:
    d.add_argument("--data", required=True, help="dataset root folder (nothing is downloaded)")
    d.add_argument(
        "--dataset",
        required=True,
        help="dataset reader name: market1501, dukemtmcreid, cuhk03, msmt17, cuhk03_pair, market_layout (generic folder)",
    )
    d.add_argument("--max-images", type=int, default=None, help="quick runs: train on N random training images")
    d.add_argument(
        "--val-ids",
        type=int,
        default=0,
        metavar="N",
        help="hold N training identities out as a validation query/gallery and evaluate on them instead of the test "
        "split (choose recipes and settings on this, never on test)",
    )
    d.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="read and decode the training images from disk every epoch instead of once into memory "
        "(for training sets larger than RAM: 160x64x3 bytes per image)",
    )
    d.add_argument("--workers", type=int, default=0, help="data-loader worker processes with --no-cache (0 = main process)")


def _add_model_args(m: argparse._ArgumentGroup) -> None:
    m.add_argument("--variant", default="medium", choices=["small", "medium", "large"], help="HAN variant (Table 1)")
    m.add_argument("--block", default="depthwise", choices=["depthwise", "inception", "residual"], help="block type (Table 12)")
    m.add_argument("--feature", default="both", choices=["global", "local", "both"], help="which branch feeds the embedding")
    for name, what in [
        ("soft-spatial", "soft spatial attention"),
        ("soft-channel", "soft channel attention"),
        ("hard-regional", "learned hard regional attention (regions stay fixed stripes)"),
        ("cail", "cross-attention interaction learning"),
    ]:
        m.add_argument(f"--no-{name}", action="store_true", help=f"ablation: switch off {what}")


def _add_optim_args(o: argparse._ArgumentGroup) -> None:
    o.add_argument(
        "--recipe",
        default="paper",
        choices=list(RECIPES),
        help="preset of the options below: paper = the paper's recipe; fast = warm-up + cosine lr, label smoothing 0.1, "
        "flip, pad-and-crop, random erasing 0.7, weight decay 1e-3, made for --budget-minutes (explicit options override "
        "the preset)",
    )
    o.add_argument("--epochs", type=int, default=PAPER_EPOCHS, help="number of epochs (an upper bound with --budget-minutes)")
    o.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        metavar="M",
        help="fit the number of epochs to M wall minutes, measured as the run goes (decoding, epochs, checkpoints and "
        "the final evaluation included) and end on time with a checkpoint and an evaluation",
    )
    o.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS), help="sgd (with --momentum) or adam")
    o.add_argument("--lr", type=float, default=3e-2, help="initial (peak) learning rate")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    o.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (SGD or Adam)")
    o.add_argument("--batch-size", type=int, default=32, help="images per batch (P x K with --triplet)")
    o.add_argument(
        "--milestones",
        type=int,
        nargs="*",
        default=None,
        help="epochs after which lr is multiplied by --gamma (default: 100/200/250 scaled to --epochs)",
    )
    o.add_argument("--gamma", type=float, default=0.1, help="lr decay factor at each milestone")
    o.add_argument(
        "--schedule",
        default="step",
        choices=list(SCHEDULES),
        help="step: lr x --gamma at --milestones (per epoch); cosine: linear warm-up then cosine decay (per iteration)",
    )
    o.add_argument("--warmup-epochs", type=float, default=0.0, help="cosine schedule: epochs of linear warm-up")
    o.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS", help="label smoothing of the cross-entropies")
    o.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False, help="random horizontal flip")
    o.add_argument("--pad", type=int, default=0, metavar="PX", help="pad by PX pixels, then random-crop back (0 = off)")
    o.add_argument("--random-erasing", type=float, default=0.0, metavar="P", help="random erasing probability (0 = off)")
    o.add_argument(
        "--triplet",
        type=float,
        default=None,
        metavar="MARGIN",
        help="add batch-hard triplet loss with this margin; batches become P ids x K images",
    )
    o.add_argument("--instances", type=int, default=4, metavar="K", help="images per identity in a batch (with --triplet)")
    o.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision: bf16 autocast on CPU (strided depthwise convs stay float32; pays on CPUs with "
        "AVX512-BF16 or AMX, emulated and slower without), fp16 + grad scaling on CUDA (unverified). Default: on "
        "with --recipe fast on a CPU with AVX512-BF16 or AMX (1.3x the images/s at equal accuracy, docs/training.md), "
        "off otherwise",
    )
    o.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order, augmentation and --val-ids")


def _add_run_args(r: argparse._ArgumentGroup) -> None:
    r.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    r.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="keep the model in NCHW memory format (channels-last is faster on CPU, see docs/training.md)",
    )
    r.add_argument(
        "--no-retain-heap",
        dest="retain_heap",
        action="store_false",
        help="let glibc hand freed tensor memory back to the kernel (its default); by default han-train keeps it for "
        "reuse, which spares every CPU step the page faults of its large activations (docs/training.md)",
    )
    r.add_argument(
        "--eval-every",
        type=int,
        default=0,
        metavar="N",
        help="evaluate every N epochs and at the end (0 = never); best.safetensors keeps the best mAP",
    )
    r.add_argument("--output", default="runs/train", help="output folder for log, curves, checkpoints and resume state")
    again = r.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --output from its last.state.pt")
    again.add_argument("--overwrite", action="store_true", help="start afresh in an --output that holds another run")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def resolve_amp(args: argparse.Namespace) -> bool:
    """``--amp`` / ``--no-amp`` as given; unsaid, on for the CPU-budget recipe where the CPU computes bf16 natively."""
    if args.amp is not None:
        return args.amp
    from .precision import native_bf16

    return args.recipe == "fast" and args.device.split(":")[0] == "cpu" and native_bf16() is True


def config_from_args(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    overrides = {
        "block": args.block,
        "feature": args.feature,
        "soft_spatial": not args.no_soft_spatial,
        "soft_channel": not args.no_soft_channel,
        "hard_regional": not args.no_hard_regional,
        "cail": not args.no_cail,
    }
    return TrainConfig(
        variant=args.variant,
        model_overrides=overrides,
        recipe=args.recipe,
        epochs=args.epochs,
        budget_minutes=args.budget_minutes,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        milestones=tuple(args.milestones) if args.milestones is not None else None,
        gamma=args.gamma,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        flip=args.flip,
        pad=args.pad,
        random_erasing=args.random_erasing,
        triplet_margin=args.triplet,
        instances_per_id=args.instances,
        amp=resolve_amp(args),
        channels_last=args.channels_last,
        cache=args.cache,
        retain_heap=args.retain_heap,
        device=args.device,
        workers=args.workers,
        threads=args.threads,
        eval_every=args.eval_every,
        both_directions=args.dataset.lower() in TWO_DIRECTION_DATASETS,
        eval_label="validation" if args.val_ids else "test",
        seed=args.seed,
        output=args.output,
        dataset=args.dataset,
        command=shlex.join(["han-train", *argv]),
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` with the chosen ``--recipe``'s values as defaults, so explicit options still win."""
    pre = argparse.ArgumentParser(prog="han-train", add_help=False)
    pre.add_argument("--recipe", default="paper", choices=list(RECIPES))
    known, _ = pre.parse_known_args(argv)
    parser = build_parser()
    parser.set_defaults(**recipe_defaults(known.recipe))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..data import build_dataset
    from ..data.validation import carve_validation

    cfg = config_from_args(args, argv)
    try:
        splits = build_dataset(args.dataset, args.data)
        print(splits.statistics())
        if args.val_ids:
            splits = carve_validation(splits, args.val_ids, args.seed, cross_camera=cfg.both_directions)
            print(splits.statistics())
        if args.max_images is not None:
            splits = relabel_subset(splits, args.max_images, args.seed)
        if not (args.resume or args.overwrite) and (Path(args.output) / STATE_NAME).exists():
            raise FileExistsError(f"{args.output} already holds a run: --resume it, --overwrite it or pick another --output")
        result = train(splits, cfg, resume=args.resume)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"han-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint: {result.last_checkpoint}" + (f", best: {result.best_checkpoint}" if result.best_checkpoint else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
