"""Image decoding with OpenCV that turns every way a file can be bad into one clear ``DecodeError``.

The package's one decoder and one list of image suffixes: training, calibration, parity, the baseline,
viz and the runtime all read files here, so they see the same pixels and refuse the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .preprocess import to_bgr_uint8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".jp2")


def image_files(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Entries with an image suffix in ``folder`` (or anywhere under it), sorted so every run sees one order.

    Folders are left out but broken links are not, so a bad entry is reported when it is read, not dropped unseen.
    """
    entries = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


class DecodeError(ValueError):
    """An image that cannot be read or decoded; the message names the file and the reason."""


def jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG's last scan has no end-of-image marker after it (libjpeg would pad it with grey).

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an 0xFFD9 after
    the last start-of-scan (0xFFDA) can only be the real EOI; an EXIF thumbnail's EOI comes before it.
    """
    last_sos = data.rfind(b"\xff\xda")
    return last_sos < 0 or data.find(b"\xff\xd9", last_sos + 2) < 0


def decode_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> BGR uint8 (H, W, 3).

    Decoded as stored (``IMREAD_UNCHANGED``: no EXIF rotation), then grayscale, alpha and 16-bit are
    converted by :func:`to_bgr_uint8`: the pixels training and deployment both see.
    """
    if not data:
        raise DecodeError(f"{name}: empty (0-byte) file")
    if data[:2] == b"\xff\xd8":
        if data.find(b"\xff\xda") < 0:
            raise DecodeError(f"{name}: corrupt JPEG (no image data: no start-of-scan marker)")
        if jpeg_is_truncated(data):
            raise DecodeError(f"{name}: truncated JPEG (no end-of-image marker after the last scan)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DecodeError(f"{name}: not a decodable image (corrupt, or a format OpenCV cannot read)")
    try:
        return to_bgr_uint8(image)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{name}: unsupported pixel format ({exc})") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read and decode an image file as BGR uint8, raising :class:`DecodeError` with the reason."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise DecodeError(f"{p}: is a directory, not an image") from None
    except FileNotFoundError:
        raise DecodeError(f"{p}: no such file") from None
    except OSError as exc:
        raise DecodeError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return decode_bytes(data, str(p))
