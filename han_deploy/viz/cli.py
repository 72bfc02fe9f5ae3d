"""``han-viz``: attention pictures (``attention``) and ranked-result pictures (``rank``) from a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="han-viz", description="Pictures of what a HAN checkpoint does.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--checkpoint", type=Path, help="HAN safetensors checkpoint (from han-train)")
        sp.add_argument(
            "--variant",
            help="without --checkpoint: build this variant (han_small/han_medium/han_large) with random weights, with a warning",
        )
        sp.add_argument("--out", type=Path, required=True, help="folder the PNG files are written to (created if missing)")
        sp.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")

    a = sub.add_parser(
        "attention",
        help="per image: hard-attention regions and soft spatial attention of the 3 levels (paper Fig. 7)",
        description="One PNG per image: the input crop, each level's 4 hard-attention regions as coloured boxes "
        "(dashed edge: the region continues outside the image), and each level's soft spatial attention as a heat map.",
    )
    a.add_argument("images", nargs="+", type=Path, help="image files, or folders whose images are all drawn")
    model_args(a)
    a.set_defaults(subparser=a)
    a.add_argument("--scale", type=int, default=3, help="integer upscale of the model-size crop for readability (default 3)")

    r = sub.add_parser(
        "rank",
        help="queries with their top-k gallery matches framed green (correct) or red (wrong)",
        description="Rank the gallery for a sample of queries with the evaluation protocol (same-id same-camera "
        "gallery entries and junk removed) and draw one PNG per query.",
    )
    model_args(r)
    r.set_defaults(subparser=r)
    r.add_argument("--data", type=Path, required=True, help="dataset root folder")
    r.add_argument("--dataset", required=True, help="dataset name understood by han_deploy.data.build_dataset (e.g. market1501)")
    r.add_argument("--top", type=int, default=10, help="gallery images shown per query (default 10)")
    r.add_argument("--num-queries", type=int, default=8, help="how many queries to draw, sampled at random (default 8)")
    r.add_argument("--seed", type=int, default=0, help="seed of the query sample (default 0)")
    return p


def load_model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Any, str]:
    """The model to draw (checkpoint, or random weights of ``--variant`` with a warning) and a label for titles."""
    from ..model import HAN, create_model, load_checkpoint

    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            parser.error(f"--checkpoint: file not found: {args.checkpoint}")
        try:
            model, _ = load_checkpoint(args.checkpoint)
        except ValueError as exc:
            parser.error(f"--checkpoint: {exc}")
        return model.eval(), f"{args.checkpoint.name} ({model.cfg.variant})"
    if not args.variant:
        parser.error("give --checkpoint CKPT, or --variant NAME to draw a model with random weights")
    try:
        model = create_model(args.variant)
    except ValueError as exc:
        parser.error(f"--variant: {exc}")
    if not isinstance(model, HAN):
        parser.error(f"--variant: {args.variant} is not a HAN variant (han_small, han_medium, han_large)")
    print(f"warning: no --checkpoint: drawing {args.variant} with RANDOM weights; the attention means nothing", file=sys.stderr)
    return model.eval(), f"{args.variant} RANDOM weights"


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by their image files, sorted. Missing paths stay (reported later)."""
    from ..contract.decode import image_files

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(image_files(p))
        else:
            out.append(p)
    return out


def run_attention(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .attention import render_attention

    if args.scale < 1:
        parser.error(f"--scale must be >= 1, got {args.scale}")
    images = expand_images(args.images)
    if not images:
        parser.error(f"no image files in {', '.join(map(str, args.images))}")
    model, label = load_model(args, parser)
    written, failures = render_attention(model, images, args.out, scale=args.scale, label=label, batch_size=args.batch_size)
    for path, err in failures:
        print(f"skipped {path}: {err}", file=sys.stderr)
    print(f"wrote {len(written)} attention picture(s) to {args.out}")
    return 1 if failures else 0


def run_rank(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..data import build_dataset
    from ..model import extract_embeddings
    from .ranking import render_rankings

    if args.top < 1 or args.num_queries < 1:
        parser.error("--top and --num-queries must be >= 1")
    if not args.data.is_dir():
        parser.error(f"--data: folder not found: {args.data}")
    try:
        splits = build_dataset(args.dataset, args.data)
    except (ValueError, OSError) as exc:
        parser.error(f"--data {args.data} --dataset {args.dataset}: {exc}")
    if not splits.query or not splits.gallery:
        parser.error(f"--data {args.data}: dataset {args.dataset!r} has an empty query or gallery split")
    model, label = load_model(args, parser)
    q = extract_embeddings(model, [r.path for r in splits.query], batch_size=args.batch_size)
    g = extract_embeddings(model, [r.path for r in splits.gallery], batch_size=args.batch_size)
    written = render_rankings(
        splits.query, splits.gallery, q, g, args.out, top=args.top, num_queries=args.num_queries, seed=args.seed, title=label
    )
    if not written:
        print(f"no query of {args.dataset} has a correct match in the gallery: nothing to draw", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} ranking picture(s) to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parser = args.subparser
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return run_attention(args, parser) if args.command == "attention" else run_rank(args, parser)


if __name__ == "__main__":
    sys.exit(main())
