"""``han-synth``: write a synthetic re-id dataset in the Market-1501 layout."""

from __future__ import annotations

import argparse
import sys
import time

from .synth import GENERATOR_VERSION, MAX_CAMERAS, MAX_IDS, generate_dataset


def _range(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        return int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LO-HI, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-synth",
        description="Generate a synthetic person re-identification dataset in the Market-1501 layout "
        "(bounding_box_train/, bounding_box_test/, query/, names PPPP_cCsS_FFFFFF_NN.jpg). "
        "The same arguments always give the same bytes.",
    )
    p.add_argument("out", help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--ids", type=int, required=True, help=f"number of identities, 2-{MAX_IDS}; half train, half test")
    p.add_argument("--cameras", type=int, required=True, help=f"number of cameras, 2-{MAX_CAMERAS}; each id is seen by 2 or more")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--images-per-camera",
        type=_range,
        default=(2, 6),
        metavar="N|LO-HI",
        help="images of one id in one camera: a count or a range (default 2-6)",
    )
    p.add_argument(
        "--distractors", type=int, default=None, help="pid-0000 distractor images in the gallery (default 2 per test id)"
    )
    p.add_argument(
        "--junk", type=int, default=None, help="pid -1 junk images (background, bad crops) in the gallery (default 1 per test id)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="rendering processes (default: all CPUs); the output does not depend on it"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing han-synth dataset in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--version", action="version", version=f"han-synth {GENERATOR_VERSION}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = generate_dataset(
            args.out,
            args.ids,
            args.cameras,
            args.seed,
            images_per_camera=args.images_per_camera,
            distractors=args.distractors,
            junk=args.junk,
            workers=args.workers,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError, NotADirectoryError) as exc:
        print(f"han-synth: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print((out / "README.txt").read_text(), end="")
        print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
