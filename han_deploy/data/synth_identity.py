"""Synthetic identities: the persistent appearance of one person (clothes, body, hair, bag, shoes).

Colours come from small shared palettes, weighted towards the dark and neutral clothes most people
wear, so many identities share their main colours and differ only in patterns, accessories, hair or
body shape: a colour histogram alone cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]  # BGR

# (BGR, weight): upper-body garments. Dark and neutral colours dominate, as in street scenes.
UPPER_PALETTE: tuple[tuple[Color, float], ...] = (
    ((30, 30, 30), 4.0),  # black
    ((235, 235, 235), 2.5),  # white
    ((128, 128, 128), 2.0),  # grey
    ((90, 45, 30), 2.0),  # navy
    ((170, 110, 50), 1.2),  # blue
    ((40, 40, 180), 1.2),  # red
    ((50, 120, 50), 1.0),  # green
    ((60, 200, 230), 0.7),  # yellow
    ((170, 130, 230), 0.7),  # pink
    ((120, 50, 100), 0.6),  # purple
    ((40, 70, 110), 1.0),  # brown
    ((150, 190, 210), 1.0),  # beige
    ((30, 120, 230), 0.5),  # orange
    ((190, 170, 120), 0.6),  # light blue
)
LOWER_PALETTE: tuple[tuple[Color, float], ...] = (
    ((30, 30, 30), 4.0),  # black
    ((120, 70, 40), 3.0),  # jeans blue
    ((170, 130, 100), 1.0),  # light jeans
    ((100, 100, 100), 1.5),  # grey
    ((120, 160, 180), 1.0),  # khaki
    ((220, 220, 220), 0.8),  # white
    ((40, 60, 90), 0.8),  # brown
    ((60, 50, 40), 1.0),  # dark navy
    ((40, 40, 150), 0.3),  # red
)
SHOE_PALETTE: tuple[tuple[Color, float], ...] = (
    ((25, 25, 25), 4.0),
    ((235, 235, 235), 2.5),
    ((40, 60, 100), 1.0),
    ((130, 130, 130), 1.0),
    ((160, 80, 40), 0.4),
    ((40, 40, 170), 0.3),
)
HAIR_PALETTE: tuple[tuple[Color, float], ...] = (
    ((20, 20, 25), 5.0),  # black
    ((30, 45, 70), 2.0),  # dark brown
    ((50, 80, 120), 1.0),  # brown
    ((100, 170, 210), 0.5),  # blonde
    ((170, 170, 170), 0.5),  # grey
    ((40, 60, 140), 0.3),  # auburn
)
SKIN_TONES: tuple[Color, ...] = ((170, 190, 230), (140, 170, 215), (110, 145, 195), (80, 110, 160), (55, 80, 120))
ACCENT_PALETTE: tuple[Color, ...] = (
    (235, 235, 235),
    (30, 30, 30),
    (40, 40, 190),
    (200, 120, 40),
    (50, 170, 60),
    (50, 200, 230),
    (160, 60, 160),
    (30, 130, 240),
)

UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "two_tone", "open_jacket", "logo")
UPPER_PATTERN_WEIGHTS = (3.0, 1.0, 0.5, 0.7, 0.8, 1.0, 1.2)
LOWER_KINDS = ("trousers", "shorts", "skirt")
LOWER_KIND_WEIGHTS = (6.0, 1.5, 1.0)
BAGS = ("none", "backpack", "shoulder_bag", "handbag")
BAG_WEIGHTS = (4.0, 3.0, 1.8, 1.2)
HAIR_LENGTHS = ("short", "medium", "long")


@dataclass(frozen=True)
class Identity:
    """Everything about a person that stays the same from camera to camera."""

    # body, as fractions of the person's height
    height_scale: float  # relative height within a crop (tall people fill more of the box)
    build: float  # shoulder width factor
    hip_build: float
    torso_ratio: float  # hip line position from the top of the head
    head_scale: float
    skin: Color
    # hair and head
    hair: Color
    hair_length: str
    hat: Color | None
    # upper body
    upper: Color
    upper2: Color  # stripes, checks, inner shirt, lower half of two-tone tops
    upper_pattern: str
    stripe_period: float  # fraction of the height
    long_sleeves: bool
    logo: Color
    logo_shape: int  # 0 rectangle, 1 circle, 2 triangle, 3 horizontal band
    back_print: bool  # a print on the back too
    # lower body and shoes
    lower: Color
    lower_kind: str
    shoes: Color
    # accessories
    bag: str
    bag_color: Color
    bag_side: int  # +1 right, -1 left (in the front view)
    bag_size: float


def _index(rng: np.random.Generator, weights) -> int:
    cum = np.cumsum(weights)
    return min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(cum) - 1)


def _pick(rng: np.random.Generator, palette: tuple[tuple[Color, float], ...]) -> Color:
    return palette[_index(rng, [w for _, w in palette])][0]


def _choice(rng: np.random.Generator, names: tuple[str, ...], weights: tuple[float, ...]) -> str:
    return names[_index(rng, weights)]


def _jitter(rng: np.random.Generator, color: Color, amount: float) -> Color:
    """Small per-identity shade change: same palette entry, slightly different dye."""
    c = np.asarray(color, dtype=np.float64) * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount * 40, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _distinct(rng: np.random.Generator, base: Color, palette: tuple[tuple[Color, float], ...]) -> Color:
    """A palette colour visibly different from ``base`` (for stripes, checks and two-tone tops)."""
    for _ in range(20):
        c = _pick(rng, palette)
        if np.abs(np.subtract(c, base)).sum() > 120:
            return c
    return (235, 235, 235) if sum(base) < 380 else (30, 30, 30)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person's appearance from the shared palettes."""
    upper = _pick(rng, UPPER_PALETTE)
    pattern = _choice(rng, UPPER_PATTERNS, UPPER_PATTERN_WEIGHTS)
    hat = _pick(rng, UPPER_PALETTE) if rng.random() < 0.12 else None
    return Identity(
        height_scale=float(rng.uniform(0.9, 1.0)),
        build=float(rng.uniform(0.82, 1.2)),
        hip_build=float(rng.uniform(0.85, 1.2)),
        torso_ratio=float(rng.uniform(0.49, 0.56)),
        head_scale=float(rng.uniform(0.9, 1.12)),
        skin=_jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 0.05),
        hair=_jitter(rng, _pick(rng, HAIR_PALETTE), 0.08),
        hair_length=HAIR_LENGTHS[_index(rng, (0.55, 0.2, 0.25))],
        hat=hat,
        upper=_jitter(rng, upper, 0.1),
        upper2=_jitter(rng, _distinct(rng, upper, UPPER_PALETTE), 0.1),
        upper_pattern=pattern,
        stripe_period=float(rng.uniform(0.025, 0.06)),
        long_sleeves=bool(rng.random() < 0.6),
        logo=ACCENT_PALETTE[int(rng.integers(len(ACCENT_PALETTE)))],
        logo_shape=int(rng.integers(4)),
        back_print=bool(rng.random() < 0.3),
        lower=_jitter(rng, _pick(rng, LOWER_PALETTE), 0.1),
        lower_kind=_choice(rng, LOWER_KINDS, LOWER_KIND_WEIGHTS),
        shoes=_jitter(rng, _pick(rng, SHOE_PALETTE), 0.08),
        bag=_choice(rng, BAGS, BAG_WEIGHTS),
        bag_color=_jitter(rng, _pick(rng, UPPER_PALETTE), 0.1),
        bag_side=1 if rng.random() < 0.5 else -1,
        bag_size=float(rng.uniform(0.8, 1.2)),
    )
