"""Draw one synthetic person (a 2-D articulated figure) from a viewpoint, with OpenCV primitives.

The figure is drawn into a colour layer and an alpha mask so it can be composited over any background.
The viewpoint changes what is visible, as on real cameras: logos and open jackets from the front,
backpacks and long hair from behind, a narrow body with a walking stride from the side.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .synth_identity import Color, Identity

FRONT, BACK, SIDE_RIGHT, SIDE_LEFT = 0, 1, 2, 3
_SHIFT = 4  # OpenCV fixed-point bits for sub-pixel polygon vertices
_SCALE = 1 << _SHIFT


class _Canvas:
    """A colour layer plus its alpha mask; every primitive paints both."""

    def __init__(self, height: int, width: int) -> None:
        self.img = np.zeros((height, width, 3), np.uint8)
        self.mask = np.zeros((height, width), np.uint8)

    def poly(self, pts: np.ndarray, color: Color) -> None:
        p = np.round(np.asarray(pts, np.float64) * _SCALE).astype(np.int32)
        cv2.fillConvexPoly(self.img, p, color, cv2.LINE_8, _SHIFT)
        cv2.fillConvexPoly(self.mask, p, 255, cv2.LINE_AA, _SHIFT)

    def ellipse(self, center: tuple[float, float], axes: tuple[float, float], color: Color, start=0.0, end=360.0) -> None:
        c = (round(center[0] * _SCALE), round(center[1] * _SCALE))
        a = (max(1, round(axes[0] * _SCALE)), max(1, round(axes[1] * _SCALE)))
        cv2.ellipse(self.img, c, a, 0, start, end, color, -1, cv2.LINE_8, _SHIFT)
        cv2.ellipse(self.mask, c, a, 0, start, end, 255, -1, cv2.LINE_AA, _SHIFT)

    def trap(self, xc: float, y0: float, half0: float, y1: float, half1: float, color: Color) -> None:
        """A trapezoid centred on column ``xc``: half-width ``half0`` at row ``y0``, ``half1`` at row ``y1``."""
        self.poly(np.array([[xc - half0, y0], [xc + half0, y0], [xc + half1, y1], [xc - half1, y1]]), color)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
        self.poly(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), color)

    def limb(self, p0, p1, w0: float, w1: float, color: Color) -> None:
        """A tapered quad from p0 to p1 (widths w0 at p0, w1 at p1)."""
        p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6)
        self.poly(np.stack([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2]), color)

    def line(self, p0, p1, width: float, color: Color) -> None:
        self.limb(p0, p1, width, width, color)


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, c * factor)) for c in color)  # type: ignore[return-value]


def _upper_texture(ident: Identity, h: int, w: int, top: float, mid: float, u: float) -> np.ndarray:
    """The upper garment's fabric over an (h, w) region whose first row is ``top`` rows below the
    shoulders and ``mid`` the two-tone split row (stripes, checks, two-tone); masked by the caller."""
    base = np.empty((h, w, 3), np.uint8)
    base[:] = ident.upper
    pattern = ident.upper_pattern
    if pattern in ("hstripes", "vstripes", "checks"):
        period = max(2.0, ident.stripe_period * u)
        ys = np.floor((np.arange(h) - top) / period).astype(np.int64) % 2 == 1
        xs = (np.arange(w) / period).astype(np.int64) % 2 == 1
        if pattern == "hstripes":
            sel = np.broadcast_to(ys[:, None], (h, w))
        elif pattern == "vstripes":
            sel = np.broadcast_to(xs[None, :], (h, w))
        else:
            sel = ys[:, None] ^ xs[None, :]
        base[sel] = ident.upper2
    elif pattern == "two_tone":
        base[int(round(mid)) :] = ident.upper2
    return base


@dataclass(frozen=True)
class _Pose:
    """Where the figure's body lines fall (pixels), shared by every drawing step of one ``draw_person`` call."""

    view: int
    side: bool
    cx: float
    top: float
    u: float
    hr: float  # head radius
    sy: float  # shoulder line
    hy: float  # hip line
    fy: float  # sole
    ky: float  # knees
    sw: float  # half shoulder width (half depth from the side)
    hw: float  # half hip width
    aw: float  # arm width
    leg_top: float
    leg_bottom: float
    bag_side: int  # the view's side of a bag: a bag on the right hip is on the left seen from behind
    swing: float  # sin of the walking phase (stride and arm swing)


def _pose(ident: Identity, view: int, cx: float, top: float, u: float, phase: float) -> _Pose:
    """The body lines of ``ident`` seen from ``view`` (not side-left), computed once for every drawing step."""
    side = view == SIDE_RIGHT
    hr = 0.062 * u * ident.head_scale  # head radius
    sy = top + 2 * hr + 0.03 * u  # shoulder line
    hy = top + ident.torso_ratio * u  # hip line
    fy = top + 0.985 * u  # sole
    ky = (hy + fy) / 2 + 0.01 * u  # knees
    sw = (0.07 if side else 0.14) * u * ident.build  # half shoulder width (half depth from the side)
    hw = (0.065 if side else 0.105) * u * ident.hip_build
    aw = 0.06 * u * ident.build  # arm width
    leg_top, leg_bottom = (hw * 1.25 if side else hw * 1.15), 0.07 * u
    # bags and straps mirror with the view: a bag on the right hip is on the left seen from behind
    bag_side = -ident.bag_side if view == BACK else ident.bag_side
    swing = np.sin(phase)
    return _Pose(
        view=view,
        side=side,
        cx=cx,
        top=top,
        u=u,
        hr=hr,
        sy=sy,
        hy=hy,
        fy=fy,
        ky=ky,
        sw=sw,
        hw=hw,
        aw=aw,
        leg_top=leg_top,
        leg_bottom=leg_bottom,
        bag_side=bag_side,
        swing=swing,
    )


def _draw_behind(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """What the body hides partly: long hair (not from behind), a backpack seen from the side."""
    side, cx, top, u, hr, sy, hy, sw = b.side, b.cx, b.top, b.u, b.hr, b.sy, b.hy, b.sw
    if ident.hair_length == "long" and b.view != BACK:
        cv.trap(cx - (hr * 0.5 if side else 0.0), top + hr, hr, sy + 0.1 * u, hr * 1.1, ident.hair)
    if side and ident.bag == "backpack":
        bs = ident.bag_size
        cv.rect(cx - sw - 0.1 * u * bs, sy + 0.02 * u, cx - sw + 0.01 * u, hy - 0.04 * u, ident.bag_color)


def _draw_legs(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """Legs (trousers, or skin under shorts and skirts) with their shoes, then the pelvis (and skirt) over them."""
    side, cx, u, hy, fy, ky, hw = b.side, b.cx, b.u, b.hy, b.fy, b.ky, b.hw
    leg_top, leg_bottom = b.leg_top, b.leg_bottom
    skin, lower = ident.skin, ident.lower
    stride = (0.13 if side else 0.015) * u * b.swing
    legs = []
    for s in (-1.0, 1.0):
        hip = np.array([cx + (0 if side else s * hw * 0.5), hy])
        foot = np.array([cx + (s * stride if side else s * hw * 0.42 + stride * s), fy - 0.02 * u])
        knee = (hip + foot) / 2 + np.array([0.025 * u if side else 0.0, 0.0])
        knee[1] = ky
        legs.append((hip, knee, foot))
    bare_legs = ident.lower_kind != "trousers"
    for hip, knee, foot in legs:
        leg_color = skin if bare_legs else lower
        cv.limb(hip, knee, leg_top, (leg_top + leg_bottom) / 2, leg_color)
        cv.limb(knee, foot, (leg_top + leg_bottom) / 2, leg_bottom, leg_color)
        if ident.lower_kind == "shorts":
            cv.limb(hip, hip + (knee - hip) * 0.85, leg_top * 1.05, (leg_top + leg_bottom) / 2 * 1.1, lower)
        shoe_len = 0.06 * u if side else 0.035 * u
        cv.ellipse((foot[0] + (0.02 * u if side else 0.0), fy - 0.012 * u), (shoe_len, 0.02 * u), ident.shoes)
    # pelvis covers the top of both legs
    cv.trap(cx, hy - 0.02 * u, hw * 1.05, hy + 0.05 * u, hw, lower)
    if ident.lower_kind == "skirt":
        cv.trap(cx, hy - 0.02 * u, hw * 1.05, ky + 0.02 * u, hw * 1.7, lower)


def _draw_arm(cv: _Canvas, ident: Identity, b: _Pose, shoulder: np.ndarray, angle: float, color_sleeve: Color) -> None:
    """One arm from ``shoulder``, swung by ``angle`` radians, with its hand and (on the bag's side) a handbag."""
    u, aw, skin = b.u, b.aw, ident.skin
    rot = np.array([np.sin(angle), np.cos(angle)])
    elbow = shoulder + rot * 0.17 * u
    wrist = elbow + np.array([np.sin(angle * 1.4), np.cos(angle * 1.4)]) * 0.16 * u
    cv.limb(shoulder, elbow, aw, aw * 0.85, color_sleeve)
    cv.limb(elbow, wrist, aw * 0.85, aw * 0.7, color_sleeve if ident.long_sleeves else skin)
    cv.ellipse((wrist[0], wrist[1] + aw * 0.3), (aw * 0.4, aw * 0.5), skin)
    if ident.bag == "handbag" and (b.side or np.sign(shoulder[0] - b.cx) == b.bag_side):
        bs = ident.bag_size
        x0, y0 = wrist[0] - 0.05 * u * bs, wrist[1] + aw * 0.5
        cv.rect(x0, y0, x0 + 0.1 * u * bs, y0 + 0.08 * u * bs, ident.bag_color)


def _draw_torso(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """The torso in the upper garment's fabric (drawn as a mask first, then filled), then an open jacket's front."""
    side, cx, u, sy, hy, sw, hw, aw = b.side, b.cx, b.u, b.sy, b.hy, b.sw, b.hw, b.aw
    torso = _Canvas(*cv.mask.shape)
    if side:
        torso.trap(cx, sy, sw, hy + 0.03 * u, sw, (255,) * 3)
        torso.ellipse((cx, sy + aw * 0.3), (sw, aw * 0.6), (255,) * 3)
    else:
        torso.trap(cx, sy, sw, hy + 0.03 * u, hw * 1.1, (255,) * 3)
        for s in (-1, 1):
            torso.ellipse((cx + s * (sw - aw * 0.45), sy + aw * 0.45), (aw * 0.6, aw * 0.55), (255,) * 3)
    tx, ty, tw, th = cv2.boundingRect(torso.mask)
    fabric = _upper_texture(ident, th, tw, sy - ty, sy + 0.5 * (hy - sy) - ty, u)
    roi, troi = cv.img[ty : ty + th, tx : tx + tw], torso.mask[ty : ty + th, tx : tx + tw]
    sel = troi > 0
    roi[sel] = fabric[sel]
    np.maximum(cv.mask, torso.mask, out=cv.mask)
    if b.view == FRONT and ident.upper_pattern == "open_jacket":
        cv.trap(cx, sy, sw * 0.3, hy + 0.03 * u, hw * 0.35, ident.upper2)


def _draw_print(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """The chest logo (front view) or back print (back view), where the identity has one."""
    view, cx, sy, sw, u = b.view, b.cx, b.sy, b.sw, b.u
    prints_here = (view == FRONT and ident.upper_pattern == "logo") or (view == BACK and ident.back_print)
    if prints_here:
        lx, ly, ls = cx, sy + 0.1 * u, 0.045 * u
        if ident.logo_shape == 0:
            cv.rect(lx - ls, ly - ls * 0.7, lx + ls, ly + ls * 0.7, ident.logo)
        elif ident.logo_shape == 1:
            cv.ellipse((lx, ly), (ls, ls), ident.logo)
        elif ident.logo_shape == 2:
            cv.poly(np.array([[lx - ls, ly + ls], [lx + ls, ly + ls], [lx, ly - ls]]), ident.logo)
        else:
            cv.trap(cx, ly - ls * 0.5, sw, ly + ls * 0.5, sw * 0.97, ident.logo)


def _draw_bags(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """A backpack (its straps from the front) or a shoulder bag and its strap, over the torso."""
    view, side, cx, u, sy, hy, sw, hw, aw = b.view, b.side, b.cx, b.u, b.sy, b.hy, b.sw, b.hw, b.aw
    bag_side = b.bag_side
    dark_bag = _shade(ident.bag_color, 0.7)
    if ident.bag == "backpack":
        bs = ident.bag_size
        if view == BACK:
            bw = sw * 0.78 * bs
            cv.trap(cx, sy + 0.03 * u, bw, hy - 0.02 * u, bw, ident.bag_color)
            cv.trap(cx, hy - 0.1 * u, bw * 0.7, hy - 0.03 * u, bw * 0.7, dark_bag)  # front pocket
        elif view == FRONT:
            for s in (-1, 1):
                cv.line((cx + s * sw * 0.55, sy), (cx + s * sw * 0.5, sy + 0.2 * u), aw * 0.35, dark_bag)
        else:
            cv.line((cx - sw * 0.6, sy), (cx + sw * 0.1, sy + 0.18 * u), aw * 0.3, dark_bag)
    elif ident.bag == "shoulder_bag":
        bs = ident.bag_size
        if side:
            bx = cx - 0.01 * u
        else:
            bx = cx + bag_side * (hw * 1.15 + 0.035 * u)
        by = hy + 0.02 * u
        strap_from = (cx - (sw * 0.6 if side else bag_side * sw * 0.6), sy)
        cv.line(strap_from, (bx, by - 0.03 * u), aw * 0.25, dark_bag)
        bw2, bh2 = 0.05 * u * bs, 0.04 * u * bs
        cv.trap(bx, by - bh2, bw2, by + bh2, bw2, ident.bag_color)


def _draw_near_arms(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """The arms drawn over the torso: the near arm from the side, both arms from the front or back."""
    cx, sy, sw, aw, swing = b.cx, b.sy, b.sw, b.aw, b.swing
    if b.side:
        _draw_arm(cv, ident, b, np.array([cx + sw * 0.1, sy + aw * 0.4]), 0.45 * swing, ident.upper)
    else:
        for s in (-1, 1):
            _draw_arm(
                cv, ident, b, np.array([cx + s * (sw - aw * 0.45), sy + aw * 0.45]), -s * 0.07 - 0.04 * swing * s, ident.upper
            )


def _draw_head(cv: _Canvas, ident: Identity, b: _Pose) -> None:
    """Neck, head (hair from behind, face and hair otherwise) and hat."""
    view, side, cx, top, u, hr, sy = b.view, b.side, b.cx, b.top, b.u, b.hr, b.sy
    skin = ident.skin
    cv.trap(cx, top + 1.6 * hr, hr * 0.35, sy + 0.01 * u, hr * 0.4, _shade(skin, 0.9))  # neck
    hair_shift = -hr * 0.18 if side else 0.0
    if view == BACK:
        cv.ellipse((cx, top + hr), (hr * 0.86, hr * 1.02), ident.hair)
        if ident.hair_length != "short":
            drop = 0.12 * u if ident.hair_length == "long" else 0.02 * u
            cv.trap(cx, top + hr, hr * 0.9, sy + drop, hr, ident.hair)
    else:
        cv.ellipse((cx + hair_shift, top + hr * 0.92), (hr * 0.9, hr * 0.95), ident.hair)
        face_c = (cx + (hr * 0.22 if side else 0.0), top + hr * 1.18)
        cv.ellipse(face_c, (hr * (0.62 if side else 0.72), hr * 0.84), skin)
        if ident.hair_length == "medium":
            for s in (-1,) if side else (-1, 1):
                cv.trap(cx + s * hr * 0.74, top + hr * 0.8, hr * 0.18, top + hr * 1.7, hr * 0.16, ident.hair)
    if ident.hat is not None:
        cv.ellipse((cx + hair_shift * 0.5, top + hr * 0.8), (hr * 0.98, hr * 0.85), ident.hat, 180, 360)
        brim = cx + (hr * 0.35 if side else 0.0)
        cv.line((brim - hr * 1.05, top + hr * 0.8), (brim + hr * 1.05, top + hr * 0.8), hr * 0.18, _shade(ident.hat, 0.8))


def draw_person(
    ident: Identity, view: int, height: int, width: int, cx: float, top: float, u: float, phase: float
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``ident`` seen from ``view`` into a (height, width) layer: person ``u`` px tall, head top at ``top``.

    ``phase`` is the walking phase in radians (stride and arm swing). Returns (BGR uint8 layer, uint8 alpha).
    Side-left is the mirror image of side-right.
    """
    if view == SIDE_LEFT:
        img, mask = draw_person(ident, SIDE_RIGHT, height, width, width - 1 - cx, top, u, phase)
        return np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
    cv = _Canvas(height, width)
    b = _pose(ident, view, cx, top, u, phase)
    _draw_behind(cv, ident, b)
    _draw_legs(cv, ident, b)
    if b.side:  # the far arm, drawn before the torso
        _draw_arm(cv, ident, b, np.array([cx - b.sw * 0.2, b.sy + b.aw * 0.4]), -0.45 * b.swing, _shade(ident.upper, 0.8))
    _draw_torso(cv, ident, b)
    _draw_print(cv, ident, b)
    _draw_bags(cv, ident, b)
    _draw_near_arms(cv, ident, b)
    _draw_head(cv, ident, b)
    return cv.img, cv.mask
