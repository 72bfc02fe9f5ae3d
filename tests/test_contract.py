"""The contract shared by training and the runtime: preprocessing fuzzed with hypothesis (any image, any box), decoding."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from han_deploy.config import PreprocessConfig
from han_deploy.contract.decode import DecodeError, decode_bytes, image_files, jpeg_is_truncated, read_image
from han_deploy.contract.preprocess import clip_box, crop_box, normalize_batch, preprocess, resize_crop, to_bgr_uint8

PRE = PreprocessConfig()
SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]))
    shape = (h, w) if channels is None else (h, w, channels)
    if np.issubdtype(dtype, np.floating):
        elements = st.one_of(st.floats(-0.5, 1.5, width=32), st.just(float("nan")))
    else:
        elements = st.integers(0, int(np.iinfo(dtype).max))
    image = draw(arrays(dtype, shape, elements=elements))
    if draw(st.booleans()) and h > 1:
        image = image[::-1]  # negative strides, as from a flip
    return image


@SETTINGS
@given(images())
def test_any_image_becomes_a_finite_network_input(image: np.ndarray) -> None:
    crop = resize_crop(image, PRE)
    assert crop.shape == (160, 64, 3) and crop.dtype == np.uint8
    batch = preprocess([image, image], PRE)
    assert batch.shape == (2, 3, 160, 64) and batch.dtype == np.float32 and np.isfinite(batch).all()
    lo = (0 - np.array(PRE.mean)) / np.array(PRE.std)
    hi = (1 - np.array(PRE.mean)) / np.array(PRE.std)
    per_channel = batch.transpose(1, 0, 2, 3).reshape(3, -1)
    assert (per_channel.min(1) >= lo - 1e-5).all() and (per_channel.max(1) <= hi + 1e-5).all()


@SETTINGS
@given(arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_gray_16bit_and_alpha_variants_match_plain_bgr(gray: np.ndarray) -> None:
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    ref = preprocess([bgr], PRE)
    for variant in (gray, gray[:, :, None], gray.astype(np.uint16) << 8, cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), gray / 255.0):
        assert np.array_equal(preprocess([variant], PRE), ref)


def test_normalisation_is_the_contract_formula_in_rgb() -> None:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (5, 160, 64, 3), dtype=np.uint8)
    got = normalize_batch(crops, PRE)
    expect = ((crops / 255.0 - np.array(PRE.mean)) / np.array(PRE.std)).transpose(0, 3, 1, 2)
    assert got.shape == (5, 3, 160, 64) and np.abs(got - expect).max() < 1e-5
    bgr = np.zeros((20, 10, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    x = preprocess([bgr], PRE)[0]
    assert np.allclose(x[0], (1 - PRE.mean[0]) / PRE.std[0]) and np.allclose(x[2], (0 - PRE.mean[2]) / PRE.std[2])


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((0, 5, 3), np.uint8), ValueError, "empty image"),
        (np.zeros((5, 5, 5), np.uint8), ValueError, "unsupported image shape"),
        (np.zeros((5,), np.uint8), ValueError, "unsupported image shape"),
        (np.zeros((5, 5, 3), np.int32), TypeError, "unsupported image dtype int32"),
    ],
)
def test_unusable_arrays_are_refused_clearly(image: np.ndarray, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        to_bgr_uint8(image)


coords = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([float("nan"), float("inf"), -float("inf")]))


@SETTINGS
@given(st.integers(1, 60), st.integers(1, 60), st.tuples(coords, coords, coords, coords))
def test_boxes_are_clipped_inside_or_refused(h: int, w: int, box: tuple[float, float, float, float]) -> None:
    frame = np.zeros((h, w, 3), np.uint8)
    finite = all(math.isfinite(v) for v in box)
    try:
        x1, y1, x2, y2 = clip_box(box, frame.shape)
    except ValueError as exc:
        msg = str(exc)
        assert ("non-finite" in msg) if not finite else ("zero or negative area" in msg or "outside the" in msg)
        if finite and box[2] > box[0] and box[3] > box[1]:
            # refused as outside: really no overlap with the frame
            assert box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h
        return
    assert finite and 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert x1 <= max(box[0], 0) and x2 >= min(box[2], w)  # every touched pixel is kept
    assert resize_crop(crop_box(frame, box), PRE).shape == (160, 64, 3)


def test_truncated_and_corrupt_bytes() -> None:
    image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    assert not jpeg_is_truncated(jpeg) and decode_bytes(jpeg).shape == (64, 32, 3)
    assert not jpeg_is_truncated(jpeg + b"\x00" * 10)  # padding after the end marker is fine
    for cut in (len(jpeg) - 2, len(jpeg) // 2):
        with pytest.raises(DecodeError, match="truncated JPEG"):
            decode_bytes(jpeg[:cut], "x.jpg")
    png = cv2.imencode(".png", image)[1].tobytes()
    with pytest.raises(DecodeError, match="not a decodable image"):
        decode_bytes(png[: len(png) // 2], "x.png")
    with pytest.raises(DecodeError, match="0-byte"):
        decode_bytes(b"", "x.png")


def test_training_refuses_a_truncated_jpeg_exactly_as_the_runtime_does(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """libjpeg would pad a cut JPEG with grey; both training loaders skip it, logging the runtime's own reason."""
    pytest.importorskip("torch")
    from han_deploy.data.records import Record
    from han_deploy.train.dataset import ReidDataset
    from han_deploy.train.memory_cache import ImageCache

    jpeg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 256, (64, 32, 3), dtype=np.uint8))[1].tobytes()
    good, cut = tmp_path / "0001_c1s1_000001_00.jpg", tmp_path / "0001_c2s1_000002_00.jpg"
    good.write_bytes(jpeg)
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(DecodeError, match="truncated JPEG") as refused:
        read_image(cut)
    with caplog.at_level(logging.WARNING):
        dataset = ReidDataset([Record(good, 1, 0), Record(cut, 1, 1)], PRE)
        assert dataset[0] is not None and dataset[1] is None
        assert ImageCache.build([good, cut], PRE, threads=1, progress=False).ok.tolist() == [True, False]
    assert caplog.text.count(str(refused.value)) == 2  # the reason names the file, once per loader


def test_image_files_lists_one_set_of_suffixes(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "notes.txt", "Thumbs.db", "sub/c.webp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()
    assert [p.name for p in image_files(tmp_path)] == ["a.png", "b.JPG"]
    assert [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path, recursive=True)] == ["a.png", "b.JPG", "sub/c.webp"]
