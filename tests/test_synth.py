"""Synthetic re-id generator: Market layout and names, determinism, persistent identities, CLI errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from han_deploy.data.cli import main as synth_main
from han_deploy.data.synth import SPLIT_DIRS, generate_dataset, sample_crops

NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def _parse(path: Path) -> tuple[int, int]:
    m = NAME.match(path.name)
    assert m, f"bad name {path.name}"
    return int(m[1]), int(m[2])


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "ds", num_ids=6, num_cameras=2, seed=0, workers=1)


def test_layout_names_and_splits(small: Path) -> None:
    meta = json.loads((small / "meta.json").read_text())
    assert (small / "README.txt").is_file()
    pids = {}
    for split in SPLIT_DIRS:
        files = sorted((small / split).iterdir())
        assert len(files) == meta["splits"][split]["images"] > 0
        pids[split] = [_parse(p) for p in files]
        assert all(1 <= cam <= 2 for _, cam in pids[split])
    train = {p for p, _ in pids["bounding_box_train"]}
    query = {p for p, _ in pids["query"]}
    gallery = {p for p, _ in pids["bounding_box_test"]}
    assert train == set(meta["train_pids"]) and len(train) == 3
    assert query == set(meta["test_pids"]) and len(query) == 3
    assert train.isdisjoint(query) and train | query == set(range(1, 7))
    assert {0, -1} <= gallery and gallery - {0, -1} == query  # distractors and junk only in the test gallery
    assert 0 not in train | query and -1 not in train | query
    # every query has a correct match from another camera in the gallery
    g = set(pids["bounding_box_test"])
    for pid, cam in pids["query"]:
        assert any(gp == pid and gc != cam for gp, gc in g), (pid, cam)


def test_images_are_detection_sized_crops(small: Path) -> None:
    shapes = [cv2.imread(str(p)).shape for p in (small / "bounding_box_train").iterdir()]
    widths = np.array([s[1] for s in shapes])
    aspects = np.array([s[0] / s[1] for s in shapes])
    assert all(s[2] == 3 for s in shapes)
    assert widths.min() >= 30 and widths.max() <= 170
    assert 1.8 < np.median(aspects) < 3.2
    assert len(set(widths)) > 3  # varied sizes, like real detections


def test_readers_load_the_layout(small: Path) -> None:
    from han_deploy.data import build_dataset

    meta = json.loads((small / "meta.json").read_text())
    ds = build_dataset("market_layout", small)
    assert len(ds.train) == meta["splits"]["bounding_box_train"]["images"]
    assert len(ds.query) == meta["splits"]["query"]["images"]
    assert len(ds.gallery) == meta["splits"]["bounding_box_test"]["images"]
    assert ds.num_train_pids == 3


def test_deterministic_whatever_the_workers(small: Path, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", 6, 2, seed=0, workers=2)
    assert _files(again) == _files(small)
    assert (again / "meta.json").read_bytes() == (small / "meta.json").read_bytes()
    other = _files(generate_dataset(tmp_path / "other", 6, 2, seed=1, workers=1))
    first = _files(small)
    assert other != first
    assert sum(other.get(k) == v for k, v in first.items()) == 0  # no image survives a seed change


def test_distractor_and_junk_counts(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "d", 4, 3, seed=5, images_per_camera=2, distractors=7, junk=3, workers=1)
    names = [p.name for p in (out / "bounding_box_test").iterdir()]
    assert sum(n.startswith("0000_") for n in names) == 7
    assert sum(n.startswith("-1_") for n in names) == 3
    train = list((out / "bounding_box_train").iterdir())
    per_track: dict[tuple[int, int], int] = {}
    for p in train:
        key = _parse(p)
        per_track[key] = per_track.get(key, 0) + 1
    assert set(per_track.values()) == {2}  # images_per_camera=2 exactly


def _central_lab(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    core = img[int(0.2 * h) : int(0.9 * h), int(0.3 * w) : int(0.7 * w)]
    return cv2.cvtColor(core, cv2.COLOR_BGR2LAB).reshape(-1, 3).mean(axis=0)


def test_identities_persist_across_cameras(tmp_path: Path) -> None:
    """Measured on the files: a person's mean colour in one camera is closer to theirs in another camera
    than to other people's, once each camera's average colour (its global cast) is subtracted."""
    out = generate_dataset(tmp_path / "p", 16, 3, seed=3, images_per_camera=2, distractors=0, junk=0, workers=1)
    means: dict[tuple[int, int], list[np.ndarray]] = {}
    for split in ("bounding_box_train", "bounding_box_test", "query"):
        for p in (out / split).iterdir():
            means.setdefault(_parse(p), []).append(_central_lab(cv2.imread(str(p))))
    keys = sorted(means)
    avg = {k: np.mean(means[k], axis=0) for k in keys}
    cam_mean = {c: np.mean([avg[k] for k in keys if k[1] == c], axis=0) for _, c in keys}
    same, diff = [], []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if a[1] == b[1]:
                continue  # compare across cameras only
            d = float(np.linalg.norm((avg[a] - cam_mean[a[1]]) - (avg[b] - cam_mean[b[1]])))
            (same if a[0] == b[0] else diff).append(d)
    same_d, diff_d = np.array(same), np.array(diff)
    assert len(same_d) >= 16 and len(diff_d) > 100
    assert same_d.mean() < 0.7 * diff_d.mean()
    assert (same_d[:, None] < diff_d[None, :]).mean() > 0.75  # a same-id pair is usually the closer one


def test_sample_crops() -> None:
    crops = sample_crops(5, seed=2)
    assert len(crops) == 5
    assert all(c.dtype == np.uint8 and c.ndim == 3 and c.shape[2] == 3 and c.shape[0] > c.shape[1] for c in crops)
    again = sample_crops(5, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(crops, again, strict=True))
    other = sample_crops(5, seed=3)
    assert not any(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(crops, other, strict=True))
    sized = sample_crops(3, seed=2, size=(160, 64))
    assert all(c.shape == (160, 64, 3) for c in sized)
    assert sample_crops(0) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ids", "1", "--cameras", "2"], "at least 2 identities"),
        (["--ids", "4", "--cameras", "1"], "cameras must be between 2"),
        (["--ids", "4", "--cameras", "10"], "cameras must be between 2"),
        (["--ids", "10000", "--cameras", "2"], "4-digit"),
        (["--ids", "4", "--cameras", "2", "--images-per-camera", "3-1"], "images_per_camera"),
        (["--ids", "4", "--cameras", "2", "--junk", "-1"], ">= 0"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert synth_main([str(tmp_path / "out"), *args, "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written on bad arguments


def test_cli_refuses_non_empty_out_without_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = [str(out), "--ids", "2", "--cameras", "2", "--images-per-camera", "1", "--distractors", "0", "--junk", "0", "--quiet"]
    assert synth_main(args) == 0
    before = _files(out)
    assert synth_main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert synth_main([*args, "--overwrite", "--seed", "9"]) == 0
    assert _files(out) != before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    assert synth_main([str(foreign), *args[1:], "--overwrite"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_cli_bad_range_syntax(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        synth_main([str(tmp_path / "o"), "--ids", "4", "--cameras", "2", "--images-per-camera", "a-b"])
    assert exc.value.code == 2
