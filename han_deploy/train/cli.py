"""``han-train``: train HAN on a re-id dataset with the paper's recipe (DESIGN.md §3) or a variant of it."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from ..evaluate.cli import TWO_DIRECTION_DATASETS
from .state import STATE_NAME
from .trainer import PAPER_EPOCHS, TrainConfig, relabel_subset, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-train",
        description="Train a HAN person re-id model. Defaults are the paper's recipe: per-branch softmax cross-entropy "
        "summed, SGD lr 3e-2 momentum 0.9 weight decay 5e-4, batch 32, 300 epochs, lr x0.1 at 100/200/250, no augmentation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", required=True, help="dataset root folder (nothing is downloaded)")
    d.add_argument(
        "--dataset",
        required=True,
        help="dataset reader name: market1501, dukemtmcreid, cuhk03, msmt17, cuhk03_pair, market_layout (generic folder)",
    )
    d.add_argument("--max-images", type=int, default=None, help="quick runs: train on N random training images")
    d.add_argument("--workers", type=int, default=0, help="data-loader worker processes (0 = load in the main process)")
    m = p.add_argument_group("model")
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
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=PAPER_EPOCHS, help="number of epochs")
    o.add_argument("--lr", type=float, default=3e-2, help="initial SGD learning rate")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    o.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    o.add_argument("--batch-size", type=int, default=32, help="images per batch (P x K with --triplet)")
    o.add_argument(
        "--milestones",
        type=int,
        nargs="*",
        default=None,
        help="epochs after which lr is multiplied by --gamma (default: 100/200/250 scaled to --epochs)",
    )
    o.add_argument("--gamma", type=float, default=0.1, help="lr decay factor at each milestone")
    o.add_argument("--random-erasing", type=float, default=0.0, metavar="P", help="random erasing probability (0 = off)")
    o.add_argument(
        "--triplet",
        type=float,
        default=None,
        metavar="MARGIN",
        help="add batch-hard triplet loss with this margin; batches become P ids x K images",
    )
    o.add_argument("--instances", type=int, default=4, metavar="K", help="images per identity in a batch (with --triplet)")
    o.add_argument("--amp", action="store_true", help="mixed precision: bf16 autocast on CPU, fp16 + grad scaling on CUDA")
    o.add_argument("--seed", type=int, default=0, help="seed for initialisation, data order and augmentation")
    r = p.add_argument_group("run")
    r.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
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
    return p


def config_from_args(args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    overrides = {
        "block": args.block,
        "feature": args.feature,
        "soft_spatial": not args.no_soft_spatial,
        "soft_channel": not args.no_soft_channel,
        "hard_regional": not args.no_hard_regional,
        "cail": not args.no_cail,
    }
    if args.triplet is not None and args.batch_size % args.instances:
        raise SystemExit(f"han-train: with --triplet, --batch-size {args.batch_size} must be a multiple of --instances")
    return TrainConfig(
        variant=args.variant,
        model_overrides=overrides,
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        milestones=tuple(args.milestones) if args.milestones is not None else None,
        gamma=args.gamma,
        random_erasing=args.random_erasing,
        triplet_margin=args.triplet,
        instances_per_id=args.instances,
        amp=args.amp,
        device=args.device,
        workers=args.workers,
        threads=args.threads,
        eval_every=args.eval_every,
        both_directions=args.dataset.lower() in TWO_DIRECTION_DATASETS,
        seed=args.seed,
        output=args.output,
        dataset=args.dataset,
        command=shlex.join(["han-train", *argv]),
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from ..data import build_dataset

    cfg = config_from_args(args, argv)
    try:
        splits = build_dataset(args.dataset, args.data)
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
