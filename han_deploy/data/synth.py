"""Synthetic re-id dataset generator writing the Market-1501 layout (``han-synth``).

Identities (``synth_identity``) are drawn by OpenCV (``synth_person``) into camera scenes
(``synth_camera``) and cropped like a pedestrian detector would: jittered, sometimes cutting the
body, sometimes occluded. Every image is rendered from its own seed, derived from
(seed, kind, pid, camera, index), so the output is byte-identical for the same arguments whatever
the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .synth_camera import SCENES_PER_CAMERA, Camera, build_scene, color_response, sample_camera, sensor
from .synth_identity import Identity, sample_identity
from .synth_person import draw_person

GENERATOR = "han-synth"
GENERATOR_VERSION = "1.0"
SPLIT_DIRS = ("bounding_box_train", "bounding_box_test", "query")
MAX_CAMERAS = 9  # the Market name keeps one digit for the camera
MAX_IDS = 9999  # and four for the person id

# seed-sequence tags, so different uses of the same seed never share a stream
_IDENTITY, _CAMERA, _SCENE, _IMAGE, _TRACK, _PLAN, _SAMPLE = range(1, 8)
# image modes
PERSON, BAD_BOX, BACKGROUND, FRAGMENT = "person", "bad_box", "background", "fragment"
_MODE_CODE = {PERSON: 0, BAD_BOX: 1, BACKGROUND: 2, FRAGMENT: 3}
# internal identity numbers for people who are not among the dataset's ids (distractors, samples)
_STRANGER_BASE = 100_000


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


@lru_cache(maxsize=4096)
def identity(seed: int, pid: int) -> Identity:
    """The persistent appearance of person ``pid`` under ``seed``."""
    return sample_identity(_rng(seed, _IDENTITY, pid))


@lru_cache(maxsize=64)
def camera(seed: int, cam: int) -> Camera:
    """Camera ``cam`` (0-based) under ``seed``."""
    return sample_camera(_rng(seed, _CAMERA, cam))


@lru_cache(maxsize=SCENES_PER_CAMERA * MAX_CAMERAS)
def _scene(seed: int, cam: int, variant: int) -> np.ndarray:
    return build_scene(camera(seed, cam), _rng(seed, _SCENE, cam, variant), variant)


@dataclass(frozen=True)
class ImageJob:
    """One crop to render: which person (internal id), camera, viewpoint, mode, and where it goes."""

    split: str
    name: str
    mode: str
    pid: int  # internal identity number (distractors and junk use strangers or test ids)
    cam: int  # 0-based
    view: int
    index: int  # distinguishes the images of one (mode, pid, cam)


def _composite(dst: np.ndarray, layer: np.ndarray, mask: np.ndarray) -> None:
    """Alpha-blend a person layer into a float32 canvas in place."""
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0:
        return
    y1, x1 = y0 + h, x0 + w
    a = mask[y0:y1, x0:x1, None].astype(np.float32) / 255.0
    dst[y0:y1, x0:x1] = layer[y0:y1, x0:x1] * a + dst[y0:y1, x0:x1] * (1.0 - a)


def _background(scene: np.ndarray, cam: Camera, hc: int, wc: int, rng: np.random.Generator) -> np.ndarray:
    """A patch of the camera's scene, bottom on the floor, resized to the canvas."""
    sh, sw = scene.shape[:2]
    ph = int(rng.uniform(0.45, 0.95) * sh)
    pw = min(sw, max(8, int(ph * wc / hc)))
    floor_top = int(cam.horizon * sh + 0.3 * (sh - cam.horizon * sh))
    y1 = int(rng.integers(max(ph, floor_top), sh + 1))
    x0 = int(rng.integers(0, sw - pw + 1))
    patch = scene[y1 - ph : y1, x0 : x0 + pw]
    return cv2.resize(patch, (wc, hc), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def render_crop(seed: int, job: ImageJob) -> tuple[np.ndarray, int]:
    """Render one detection crop; returns (BGR uint8 image, JPEG quality to save it with)."""
    rng = _rng(seed, _IMAGE, _MODE_CODE[job.mode], job.pid, job.cam, job.index)
    cam = camera(seed, job.cam)
    ident = identity(seed, job.pid)
    w_out = float(np.clip(cam.crop_width * rng.lognormal(0, 0.15), 44, 132))
    aspect = float(np.clip(cam.aspect + rng.normal(0, 0.15), 1.9, 3.2))
    h_out = w_out * aspect
    u = h_out / rng.uniform(1.0, 1.1) * ident.height_scale  # person height in px
    hc, wc = int(h_out * 1.7), int(w_out * 2.6)
    cx, cy = wc / 2 + rng.normal(0, 0.02) * w_out, hc / 2
    top = cy - u / 2
    canvas = _background(_scene(seed, job.cam, int(rng.integers(SCENES_PER_CAMERA))), cam, hc, wc, rng)

    def person(p: Identity, view: int, dx: float, scale: float) -> None:
        uu = u * scale
        layer, mask = draw_person(p, view, hc, wc, cx + dx, cy - uu / 2 + (u - uu) / 2, uu, float(rng.uniform(0, 2 * np.pi)))
        _composite(canvas, layer, mask)

    def stranger_view() -> int:
        return int(rng.choice(4, p=cam.view_probs))

    if rng.random() < cam.bystander_prob:  # someone behind, half in the box
        person(
            sample_identity(rng),
            stranger_view(),
            float(rng.choice([-1, 1]) * rng.uniform(0.45, 0.75) * w_out),
            float(rng.uniform(0.85, 1.05)),
        )
    if job.mode != BACKGROUND:
        person(ident, job.view, 0.0, 1.0)
    if rng.random() < cam.occlusion_prob:
        if rng.random() < 0.5:  # another pedestrian in front
            person(
                sample_identity(rng),
                stranger_view(),
                float(rng.choice([-1, 1]) * rng.uniform(0.4, 0.65) * w_out),
                float(rng.uniform(1.0, 1.15)),
            )
        else:  # an object: bin, bench, car, bollard
            ow, oh = rng.uniform(0.4, 1.3) * w_out, rng.uniform(0.15, 0.45) * u
            ox = cx + rng.uniform(-0.8, 0.2) * w_out
            oy = top + u * 1.02
            color = tuple(float(c) for c in rng.integers(20, 230, 3))
            cv2.rectangle(canvas, (int(ox), int(oy - oh)), (int(ox + ow), int(oy)), color, -1)
    # detector box: jitter in position and scale, sometimes cut
    scale = float(np.clip(rng.normal(1.0, cam.jitter), 0.85, 1.25))
    bw, bh = w_out * scale, h_out * scale
    bx = cx - bw / 2 + rng.normal(0, cam.jitter) * bw
    by = cy - bh / 2 + rng.normal(0, cam.jitter * 0.6) * bh
    if job.mode == BAD_BOX:  # a false detection: half a person, or too much background
        if rng.random() < 0.5:
            bx += rng.choice([-1, 1]) * rng.uniform(0.45, 0.7) * bw
        else:
            grow = rng.uniform(1.35, 1.6)
            bx, by, bw, bh = bx - bw * (grow - 1) / 2, by - bh * (grow - 1) / 2, bw * grow, bh * grow
    elif job.mode == FRAGMENT:  # a badly cut body: only legs, or only head and shoulders
        frac = rng.uniform(0.25, 0.45)
        if rng.random() < 0.6:
            by = by + bh * (1 - frac)
        bh *= frac
    elif job.mode == PERSON and rng.random() < cam.partial_prob:
        if rng.random() < 0.3:
            cut = rng.uniform(0.15, 0.3)
            by, bh = by + cut * bh, bh * (1 - cut)
        else:
            bh *= rng.uniform(0.6, 0.85)
    x0, y0 = int(np.clip(round(bx), 0, wc - 16)), int(np.clip(round(by), 0, hc - 16))
    x1, y1 = int(np.clip(round(bx + bw), x0 + 16, wc)), int(np.clip(round(by + bh), y0 + 16, hc))
    # lighting: a left-right gradient and a per-image exposure change, then the camera's colour response
    ramp = 1.0 + (cam.light_slope + rng.normal(0, 0.05)) * (np.arange(x0, x1, dtype=np.float32) - cx) / w_out
    crop = canvas[y0:y1, x0:x1] * ramp[None, :, None]
    crop = sensor(color_response(crop, cam, float(rng.uniform(0.9, 1.1))), cam, rng)
    quality = int(rng.integers(cam.jpeg_quality[0], cam.jpeg_quality[1] + 1))
    return crop, quality


def _encode(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _write_chunk(args: tuple[int, str, list[ImageJob]]) -> int:
    seed, out_dir, jobs = args
    for job in jobs:
        img, q = render_crop(seed, job)
        Path(out_dir, job.split, job.name).write_bytes(_encode(img, q))
    return len(jobs)


def _parse_range(value: int | Sequence[int], name: str) -> tuple[int, int]:
    lo, hi = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= int(lo) <= int(hi):
        raise ValueError(f"{name} must be a positive count or a range lo <= hi (got {value!r})")
    return int(lo), int(hi)


@dataclass
class DatasetPlan:
    """Every image of a dataset (``jobs``, in writing order) and the train/test id split."""

    jobs: list[ImageJob]
    train_pids: list[int]
    test_pids: list[int]


def plan_dataset(
    num_ids: int,
    num_cameras: int,
    seed: int,
    images_per_camera: int | Sequence[int] = (2, 6),
    distractors: int | None = None,
    junk: int | None = None,
) -> DatasetPlan:
    """Decide every image (name, split, identity, camera, view) without rendering anything."""
    if num_ids < 2:
        raise ValueError(f"need at least 2 identities (half train, half test), got {num_ids}")
    if num_ids > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} identities fit the 4-digit Market pid, got {num_ids}")
    if not 2 <= num_cameras <= MAX_CAMERAS:
        raise ValueError(f"cameras must be between 2 and {MAX_CAMERAS} (a re-id match crosses cameras), got {num_cameras}")
    lo, hi = _parse_range(images_per_camera, "images_per_camera")
    rng = _rng(seed, _PLAN)
    order = rng.permutation(np.arange(1, num_ids + 1))
    train_pids = sorted(int(p) for p in order[: num_ids // 2])
    test_pids = sorted(int(p) for p in order[num_ids // 2 :])
    n_test = len(test_pids)
    distractors = 2 * n_test if distractors is None else distractors
    junk = n_test if junk is None else junk
    if distractors < 0 or junk < 0:
        raise ValueError("distractors and junk must be >= 0")
    test_set = set(test_pids)
    cams = [camera(seed, c) for c in range(num_cameras)]
    jobs: list[ImageJob] = []
    for pid in range(1, num_ids + 1):
        trng = _rng(seed, _TRACK, pid)
        n_cams = int(trng.integers(2, num_cameras + 1))
        track_cams = sorted(int(c) for c in trng.choice(num_cameras, n_cams, replace=False))
        per_cam: list[list[ImageJob]] = []
        for c in track_cams:
            seq, f0, step = int(trng.integers(1, 7)), int(trng.integers(0, 150_000)), int(trng.integers(5, 40))
            dominant = int(trng.choice(4, p=cams[c].view_probs))
            track = []
            for k in range(int(trng.integers(lo, hi + 1))):
                view = dominant if trng.random() < 0.75 else int(trng.choice(4, p=cams[c].view_probs))
                name = f"{pid:04d}_c{c + 1}s{seq}_{f0 + k * step:06d}_{int(trng.integers(0, 4)):02d}.jpg"
                track.append(ImageJob("bounding_box_train", name, PERSON, pid, c, view, k))
            per_cam.append(track)
        if pid not in test_set:
            jobs.extend(j for track in per_cam for j in track)
            continue
        query_idx = {i: int(trng.integers(len(t))) for i, t in enumerate(per_cam) if len(t) >= 2}
        if not query_idx:  # every camera saw this person once: query one of them, the rest is the gallery
            query_idx = {0: 0}
        for i, track in enumerate(per_cam):
            for k, j in enumerate(track):
                split = "query" if query_idx.get(i) == k else "bounding_box_test"
                jobs.append(dataclasses.replace(j, split=split))
    used: set[str] = set()

    def unique_name(prefix: str, c: int) -> str:
        while True:
            seq, frame, box = int(rng.integers(1, 7)), int(rng.integers(0, 1_000_000)), int(rng.integers(0, 10))
            name = f"{prefix}_c{c + 1}s{seq}_{frame:06d}_{box:02d}.jpg"
            if name not in used:
                used.add(name)
                return name

    for k in range(distractors):
        c = int(rng.integers(num_cameras))
        mode = BAD_BOX if rng.random() < 0.25 else PERSON
        pid = _STRANGER_BASE + k if mode == PERSON else int(rng.choice(test_pids))
        jobs.append(
            ImageJob("bounding_box_test", unique_name("0000", c), mode, pid, c, int(rng.choice(4, p=cams[c].view_probs)), k)
        )
    for k in range(junk):
        c = int(rng.integers(num_cameras))
        mode = BACKGROUND if rng.random() < 0.5 else FRAGMENT
        pid = int(rng.choice(test_pids))
        jobs.append(
            ImageJob("bounding_box_test", unique_name("-1", c), mode, pid, c, int(rng.choice(4, p=cams[c].view_probs)), k)
        )
    return DatasetPlan(jobs, train_pids, test_pids)


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (overwrite=True / --overwrite replaces a han-synth dataset)")
        meta = out / "meta.json"
        try:
            ours = json.loads(meta.read_text()).get("generator") == GENERATOR
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise FileExistsError(f"{out} is not empty and has no han-synth meta.json: refusing to delete it")
        for name in (*SPLIT_DIRS, "meta.json", "README.txt"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    for d in SPLIT_DIRS:
        (out / d).mkdir(parents=True, exist_ok=True)


def _statistics(plan: DatasetPlan) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = {}
    for split in SPLIT_DIRS:
        jobs = [j for j in plan.jobs if j.split == split]
        names = [j.name for j in jobs]
        stats[split] = {
            "images": len(jobs),
            "ids": len({n.split("_")[0] for n in names if not n.startswith(("0000", "-1"))}),
            "cameras": len({j.cam for j in jobs}),
            "distractors": sum(n.startswith("0000") for n in names),
            "junk": sum(n.startswith("-1") for n in names),
        }
    return stats


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the [train] extra; the generator works without it
        return None
    return tqdm(total=total, unit="img", desc="han-synth")


def generate_dataset(
    out_dir: str | os.PathLike[str],
    num_ids: int,
    num_cameras: int,
    seed: int = 0,
    images_per_camera: int | Sequence[int] = (2, 6),
    distractors: int | None = None,
    junk: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a Market-1501-layout synthetic dataset to ``out_dir`` and return its path.

    Half the ids (drawn by the seed) go to ``bounding_box_train/``, half to the test split: one
    query per (id, camera) that has at least two images in ``query/``, the rest in
    ``bounding_box_test/`` together with ``distractors`` (pid 0000; default 2 per test id) and
    ``junk`` (pid -1; default 1 per test id). Each id appears in 2..num_cameras cameras with
    ``images_per_camera`` (an int or a (lo, hi) range) images each. ``workers`` processes render
    (default: all CPUs); the bytes do not depend on it.
    """
    plan = plan_dataset(num_ids, num_cameras, seed, images_per_camera, distractors, junk)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    n_workers = max(1, min(workers or os.cpu_count() or 1, 32))
    chunk = 64
    chunks = [(seed, str(out), plan.jobs[i : i + chunk]) for i in range(0, len(plan.jobs), chunk)]
    bar = _progress(len(plan.jobs), progress)
    with ProcessPoolExecutor(max_workers=n_workers) if n_workers > 1 else nullcontext() as pool:
        for n in (pool.map if pool is not None else map)(_write_chunk, chunks):
            if bar is not None:
                bar.update(n)
    if bar is not None:
        bar.close()
    lo, hi = _parse_range(images_per_camera, "images_per_camera")
    stats = _statistics(plan)
    meta = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_ids": num_ids,
        "num_cameras": num_cameras,
        "images_per_camera": [lo, hi],
        "distractors": stats["bounding_box_test"]["distractors"],
        "junk": stats["bounding_box_test"]["junk"],
        "train_pids": plan.train_pids,
        "test_pids": plan.test_pids,
        "splits": stats,
        "cameras": [dataclasses.asdict(camera(seed, c)) for c in range(num_cameras)],
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "README.txt").write_text(_readme(meta))
    return out


def _readme(meta: dict) -> str:
    s = meta["splits"]
    return (
        f"Synthetic person re-identification dataset written by {GENERATOR} {meta['version']} (han_deploy.data.synth).\n"
        "All images are computer-drawn; no real person appears in them.\n\n"
        f"seed {meta['seed']}, {meta['num_ids']} ids, {meta['num_cameras']} cameras, "
        f"{meta['images_per_camera'][0]}-{meta['images_per_camera'][1]} images per id and camera.\n"
        "Layout as Market-1501: bounding_box_train/, bounding_box_test/, query/; names PPPP_cCsS_FFFFFF_NN.jpg\n"
        "(pid, camera, sequence, frame, box index); pid 0000 = distractor, -1 = junk (bounding_box_test/ only).\n\n"
        f"train:   {s['bounding_box_train']['ids']} ids, {s['bounding_box_train']['images']} images\n"
        f"query:   {s['query']['ids']} ids, {s['query']['images']} images\n"
        f"gallery: {s['bounding_box_test']['ids']} ids, {s['bounding_box_test']['images']} images "
        f"({s['bounding_box_test']['distractors']} distractors, {s['bounding_box_test']['junk']} junk)\n"
        "Regenerate with: han-synth OUT --ids {0} --cameras {1} --seed {2} --images-per-camera {3}-{4}\n".format(
            meta["num_ids"], meta["num_cameras"], meta["seed"], *meta["images_per_camera"]
        )
    )


def sample_crops(n: int, seed: int = 0, size: tuple[int, int] | None = None, num_cameras: int = 6) -> list[np.ndarray]:
    """``n`` synthetic person crops (BGR uint8), rendered in memory exactly as the dataset's images.

    Each crop shows a different person in one of ``num_cameras`` cameras, after a JPEG round trip
    like the files on disk. ``size`` = (height, width) resizes every crop; by default they keep
    their varied detection sizes. Meant for INT8 calibration and tests.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = _rng(seed, _SAMPLE)
    crops = []
    for i in range(n):
        c = i % num_cameras
        view = int(rng.choice(4, p=camera(seed, c).view_probs))
        img, q = render_crop(seed, ImageJob("", "", PERSON, _STRANGER_BASE * 2 + i, c, view, i))
        decoded = cv2.imdecode(np.frombuffer(_encode(img, q), np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise RuntimeError("JPEG decoding of a rendered crop failed")
        img = decoded
        if size is not None:
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        crops.append(img)
    return crops
