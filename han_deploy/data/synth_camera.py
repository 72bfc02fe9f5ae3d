"""Synthetic cameras: each has its own scene, lighting, colour cast, viewpoints and detector behaviour.

A camera's scene is one large textured background (wall or shop fronts or vegetation above, floor
below, clutter and bystanders) drawn once; each crop takes a patch of it. The camera's colour
response, resolution, blur, noise and JPEG quality then apply to the whole crop, person included.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .synth_identity import sample_identity
from .synth_person import draw_person

SCENE_H, SCENE_W = 360, 900
SCENES_PER_CAMERA = 3
WALLS = ("bricks", "shops", "vegetation", "panels")
FLOORS = ("tiles", "asphalt", "grass", "paving")
FLOOR_WEIGHTS = (0.3, 0.3, 0.12, 0.28)  # mostly paved, like the campus and street scenes of re-id datasets


@dataclass(frozen=True)
class Camera:
    """How one camera sees people."""

    wall: str
    floor: str
    horizon: float  # wall/floor boundary as a fraction of the scene height
    gains: tuple[float, float, float]  # per-channel (BGR) colour cast
    offset: tuple[float, float, float]
    brightness: float
    contrast: float
    saturation: float
    gamma: float
    light_slope: float  # left-right illumination gradient on the person
    view_probs: tuple[float, float, float, float]  # front, back, side right, side left
    crop_width: float  # typical detection width in px (distance to the people)
    aspect: float  # typical detection height / width
    jitter: float  # detector box misalignment, fraction of the box
    partial_prob: float  # boxes that cut the body
    resolution: float  # < 1: the sensor sees fewer pixels than the crop has (upsampled look)
    blur: float  # defocus sigma in px
    motion_prob: float
    noise: float  # sensor noise sigma (0-255 scale)
    jpeg_quality: tuple[int, int]
    occlusion_prob: float
    bystander_prob: float


def sample_camera(rng: np.random.Generator) -> Camera:
    """Draw one camera's settings."""
    views = rng.dirichlet([1.2, 1.2, 0.8, 0.8])
    cast = rng.normal(1.0, 0.05, 3)
    return Camera(
        wall=WALLS[int(rng.integers(len(WALLS)))],
        floor=FLOORS[int(rng.choice(len(FLOORS), p=FLOOR_WEIGHTS))],
        horizon=float(rng.uniform(0.45, 0.7)),
        gains=tuple(float(v) for v in np.clip(cast / cast.mean(), 0.8, 1.2)),  # type: ignore[arg-type]
        offset=tuple(float(v) for v in rng.normal(0, 2, 3)),  # type: ignore[arg-type]
        brightness=float(rng.uniform(0.85, 1.15)),
        contrast=float(rng.uniform(0.85, 1.1)),
        saturation=float(rng.uniform(0.65, 1.1)),
        gamma=float(rng.uniform(0.9, 1.1)),
        light_slope=float(rng.uniform(-0.35, 0.35)),
        view_probs=tuple(float(v) for v in views),  # type: ignore[arg-type]
        crop_width=float(rng.uniform(52, 110)),
        aspect=float(rng.uniform(2.2, 2.9)),
        jitter=float(rng.uniform(0.03, 0.1)),
        partial_prob=float(rng.uniform(0.02, 0.12)),
        resolution=float(rng.uniform(0.4, 1.0)),
        blur=float(rng.uniform(0.0, 1.2)),
        motion_prob=float(rng.uniform(0.0, 0.3)),
        noise=float(rng.uniform(2.0, 9.0)),
        jpeg_quality=(int(rng.integers(35, 60)), int(rng.integers(70, 95))),
        occlusion_prob=float(rng.uniform(0.08, 0.25)),
        bystander_prob=float(rng.uniform(0.15, 0.45)),
    )


def _random_color(rng: np.random.Generator, lo: int = 40, hi: int = 220, saturation: float = 0.35) -> tuple[int, int, int]:
    """A random colour pulled towards its grey level: real walls and floors are rarely vivid."""
    c = rng.integers(lo, hi, 3).astype(np.float64)
    c = c.mean() + (c - c.mean()) * saturation
    return tuple(int(v) for v in c)  # type: ignore[return-value]


def _fill_wall(img: np.ndarray, kind: str, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    base = np.array(_random_color(rng, 60, 200), np.float32)
    img[:] = base
    if kind == "bricks":
        bh, bw = int(rng.integers(8, 16)), int(rng.integers(20, 40))
        mortar = tuple(int(v) for v in np.clip(base * 1.3, 0, 255))
        for r, y in enumerate(range(0, h, bh)):
            cv2.line(img, (0, y), (w, y), mortar, 1)
            for x in range((r % 2) * bw // 2, w, bw):
                cv2.line(img, (x, y), (x, y + bh), mortar, 1)
    elif kind == "shops":
        x = 0
        while x < w:
            sw = int(rng.integers(60, 180))
            cv2.rectangle(img, (x, 0), (x + sw, h), _random_color(rng), -1)
            cv2.rectangle(img, (x + 8, int(h * 0.25)), (x + sw - 8, h - 4), _random_color(rng, 20, 120), -1)  # window
            cv2.rectangle(img, (x, int(h * 0.08)), (x + sw, int(h * 0.2)), _random_color(rng, 0, 256, 0.9), -1)  # sign
            x += sw
    elif kind == "vegetation":
        for _ in range(160):
            c = (int(rng.integers(30, 80)), int(rng.integers(70, 140)), int(rng.integers(40, 90)))
            cv2.ellipse(
                img,
                (int(rng.integers(w)), int(rng.integers(h))),
                (int(rng.integers(8, 40)), int(rng.integers(6, 30))),
                float(rng.uniform(0, 180)),
                0,
                360,
                c,
                -1,
            )
    else:  # panels
        pw = int(rng.integers(30, 90))
        for x in range(0, w, pw):
            shade = float(rng.uniform(0.8, 1.15))
            cv2.rectangle(img, (x, 0), (x + pw - 2, h), tuple(int(v) for v in np.clip(base * shade, 0, 255)), -1)


def _fill_floor(img: np.ndarray, kind: str, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    if kind == "grass":
        img[:] = (60, 110, 80)
    else:
        img[:] = _random_color(rng, 70, 190)
    if kind in ("tiles", "paving"):
        step = int(rng.integers(16, 40)) if kind == "tiles" else int(rng.integers(8, 16))
        line = tuple(int(v) for v in np.clip(img[0, 0].astype(np.float32) * 0.75, 0, 255))
        for y in range(0, h, step):
            cv2.line(img, (0, y), (w, y), line, 1)
        for x in range(0, w, step * 2):
            cv2.line(img, (x, 0), (x, h), line, 1)


def build_scene(cam: Camera, rng: np.random.Generator, variant: int = 0) -> np.ndarray:
    """One of the camera's backgrounds: wall above the horizon, floor below, clutter and bystanders.

    Variant 0 has the camera's own wall; the others (the far side of the street, the next shop
    front) draw theirs at random, so crops from one camera do not all share one backdrop.
    """
    scene = np.empty((SCENE_H, SCENE_W, 3), np.uint8)
    hz = int(cam.horizon * SCENE_H)
    _fill_wall(scene[:hz], cam.wall if variant == 0 else WALLS[int(rng.integers(len(WALLS)))], rng)
    _fill_floor(scene[hz:], cam.floor, rng)
    for _ in range(int(rng.integers(3, 9))):  # poles, bins, benches, signs
        x, wdt = int(rng.integers(SCENE_W)), int(rng.integers(4, 50))
        y1 = int(rng.integers(hz - 40, SCENE_H))
        y0 = y1 - int(rng.integers(20, 200))
        cv2.rectangle(scene, (x, y0), (x + wdt, y1), _random_color(rng, 20, 230, 0.8), -1)
    for _ in range(int(rng.integers(2, 6))):  # far-away people, smaller than the crops' subjects
        u = float(rng.uniform(60, 140))
        h, w = int(u * 1.05), int(u * 0.6)
        img, mask = draw_person(sample_identity(rng), int(rng.integers(4)), h, w, w / 2, 2, u, float(rng.uniform(0, 6.28)))
        x, y = int(rng.integers(0, SCENE_W - w)), int(rng.integers(max(0, hz - h), SCENE_H - h))
        a = (mask.astype(np.float32) / 255)[..., None]
        roi = scene[y : y + h, x : x + w]
        roi[:] = (img * a + roi * (1 - a)).astype(np.uint8)
    noise = rng.normal(0, 6, scene.shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(scene, (0, 0), 0.8).astype(np.float32) + noise, 0, 255).astype(np.uint8)


def color_response(img: np.ndarray, cam: Camera, light: float) -> np.ndarray:
    """The camera's colour cast, exposure, contrast, saturation and gamma (float32 BGR in, float32 out).

    Everything before the gamma is one affine colour map (a 3x4 matrix), the gamma a lookup table.
    """
    s, k = cam.saturation, cam.contrast
    mix = s * np.eye(3) + (1 - s) / 3.0  # pull each channel towards the grey level
    lin = k * mix @ np.diag(np.asarray(cam.gains) * cam.brightness * light)
    off = k * (mix @ np.asarray(cam.offset)) + 128.0 * (1 - k)
    mapped = cv2.transform(img, np.hstack([lin, off[:, None]]).astype(np.float32))
    lut = (np.power(np.arange(256) / 255.0, cam.gamma) * 255.0).astype(np.float32)
    return lut[np.clip(mapped, 0, 255).astype(np.uint8)]


def sensor(img: np.ndarray, cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss, defocus or motion blur and noise (float32 BGR in, uint8 out)."""
    h, w = img.shape[:2]
    res = cam.resolution * rng.uniform(0.85, 1.15)
    if res < 0.95:
        small = cv2.resize(img, (max(8, round(w * res)), max(16, round(h * res))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = cam.blur * rng.uniform(0.5, 1.5)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < cam.motion_prob:
        k = int(rng.integers(3, 8))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(-30, 30)), 1.0)
        streak = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, (streak / max(float(streak.sum()), 1e-6)).astype(np.float32))
    noisy = img + rng.normal(0, cam.noise, img.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)
