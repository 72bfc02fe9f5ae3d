"""Write 160x64 JPEG copies of a crop folder, resized as training reads them, to carry to a GPU machine.

The pair-1 originals (136 MB) exceed what a device call can carry; resized copies are about 40 MB. The copies
go to an ignored folder and never into the repository (the CUHK03 terms). Each crop is read and resized by the
contract's ``read_image`` / ``resize_crop``, as ``han-train`` does, kept in OpenCV's BGR order (the file format's),
then re-encoded as JPEG (quality 90).
Usage: python benchmarks/training/recipes/pack_resized.py SRC DST
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2

from han_deploy.config import PreprocessConfig
from han_deploy.contract.decode import read_image
from han_deploy.contract.preprocess import resize_crop


def pack(src: Path, dst: Path, quality: int = 90, threads: int = 4) -> int:
    """Resize every ``*.jpg`` under ``src`` into the same relative path under ``dst``; returns the count."""
    pre = PreprocessConfig(channel_order="BGR")  # the model's RGB written by cv2.imwrite would swap red and blue

    def one(path: Path) -> None:
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), resize_crop(read_image(path), pre), [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"{out}: could not write the resized copy")

    files = sorted(src.rglob("*.jpg"))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, files))
    return len(files)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="dataset root holding the crops (e.g. ../shared/data/cuhk03-pair1)")
    p.add_argument("dst", type=Path, help="output root (keep it out of git: e.g. a folder named in .git/info/exclude)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the copies")
    args = p.parse_args()
    print(f"{pack(args.src, args.dst, args.quality)} crops written under {args.dst}")


if __name__ == "__main__":
    main()
