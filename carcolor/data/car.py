"""One synthetic car: its shape and paint, sampled once per advert, and its side view drawn and shaded.

A car is drawn on a transparent working canvas about twice the photo's resolution, in two images
drawn together: one says which part (paint, glass, fixed-colour parts, the silhouette's rim) covers
each pixel, the other holds the colours of the fixed-colour parts. Shading is then computed at half
that resolution from each part's coverage, which anti-aliases the edges. carcolor.data.photo takes
the result to a photo; carcolor.data.synth draws one car per advert.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .colours import COLOURS, PAINT_JITTER

# Working canvas for one car (side view), before the 2x box-filter reduction; scaled with `size`.
_CANVAS_W, _CANVAS_H = 640, 320
_GROUND_Y = 296.0

# Layer labels for the car drawing.
_BG, _PAINT, _GLASS, _FLAT, _DARK_PAINT, _EDGE = 0, 1, 2, 3, 4, 5
_ONE_HOT_LUT = {k: [255 if v == k else 0 for v in range(256)] for k in range(6)}
_NOT_BG_LUT = [0] + [255] * 255
_DARK = (22, 23, 26)  # window frames and rubbers


@dataclass(frozen=True)
class Car:
    """Everything that stays fixed across the photos of one advert."""

    style: str
    length: float  # fraction of the canvas width
    roof: float  # roof height above ground / length
    belt: float  # beltline height above ground / length
    wheel: float  # wheel radius / length
    overhang_f: float
    overhang_r: float
    bonnet: float
    paint: tuple[float, float, float]
    metallic: float  # 0..1: strength of specular highlights
    glass_tint: float
    rim: tuple[int, int, int]
    spokes: int
    cladding: bool


@dataclass
class Layer:
    """A drawn car, reduced 2x and cropped to it: what carcolor.data.photo needs to photograph it."""

    rgb: Image.Image  # RGB, reduced resolution, cropped to the car
    alpha: Image.Image  # L, reduced resolution
    paint: np.ndarray  # (h, w) float32 0..1: paint coverage (for highlights)
    centre_x: float  # car centre, reduced layer px
    ground_y: float
    car_len: float
    roof_y: float


# --------------------------------------------------------------------------- geometry helpers


def _chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Corner-cutting smoothing of a closed polygon (Chaikin)."""
    p = points
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _poly(points: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]


def _lerp_x(p0: tuple[float, float], p1: tuple[float, float], y: float) -> float:
    """x on the line p0-p1 at height y."""
    (x0, y0), (x1, y1) = p0, p1
    if abs(y1 - y0) < 1e-9:
        return x0
    return x0 + (x1 - x0) * (y - y0) / (y1 - y0)


# --------------------------------------------------------------------------- per-advert sampling


def _sample_paint(colour: str, rng: np.random.Generator) -> tuple[tuple[float, float, float], float]:
    """Per-advert paint shade (RGB floats 0..255) and metallic strength."""
    l_sd, s_sd, h_sd, p_metal = PAINT_JITTER[colour]
    r, g, b = (c / 255.0 for c in COLOURS[colour])
    h, lum, sat = colorsys.rgb_to_hls(r, g, b)
    lum_f = math.exp(l_sd * float(np.clip(rng.normal(), -2.0, 2.0)))
    lum = min(0.97, lum * lum_f) if lum < 0.5 else 1.0 - min(0.97, (1.0 - lum) / lum_f)
    sat = min(1.0, sat * math.exp(rng.normal(0.0, s_sd)))
    h = (h + rng.normal(0.0, h_sd)) % 1.0 if h_sd else h
    r, g, b = colorsys.hls_to_rgb(h, lum, sat)
    rgb = np.array([r, g, b]) * 255.0
    if colour in ("Grey", "Silver", "White", "Black"):
        # neutral paints lean slightly warm or cool
        rgb = rgb + rng.normal(0.0, 2.0) * np.array([1.0, 0.2, -1.0])
    metallic = float(rng.uniform(0.55, 1.0) if rng.random() < p_metal else rng.uniform(0.15, 0.4))
    rgb = np.clip(rgb, 0.0, 255.0)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2])), metallic


def sample_car(colour: str, style: str, rng: np.random.Generator) -> Car:
    """One advert's car of `style` in a shade of `colour`, drawn from `rng`."""
    paint, metallic = _sample_paint(colour, rng)
    u = rng.uniform
    if style == "suv":
        dims = dict(length=u(0.80, 0.90), roof=u(0.37, 0.41), belt=u(0.245, 0.27), wheel=u(0.082, 0.092),
                    bonnet=u(0.23, 0.27))
    elif style == "hatchback":
        dims = dict(length=u(0.76, 0.86), roof=u(0.345, 0.38), belt=u(0.215, 0.235), wheel=u(0.072, 0.08),
                    bonnet=u(0.22, 0.26))
    elif style == "estate":
        dims = dict(length=u(0.86, 0.94), roof=u(0.31, 0.345), belt=u(0.2, 0.22), wheel=u(0.068, 0.075),
                    bonnet=u(0.23, 0.27))
    else:  # saloon
        dims = dict(length=u(0.86, 0.94), roof=u(0.30, 0.33), belt=u(0.2, 0.22), wheel=u(0.068, 0.075),
                    bonnet=u(0.25, 0.29))
    rim_kind = rng.integers(0, 4)
    rim = ((196, 199, 203), (172, 175, 180), (92, 94, 98), (40, 40, 42))[rim_kind]
    return Car(
        style=style,
        overhang_f=u(0.17, 0.21),
        overhang_r=u(0.15, 0.2) if style != "saloon" else u(0.18, 0.22),
        paint=paint,
        metallic=metallic,
        glass_tint=u(0.55, 1.0) if style != "suv" else u(0.35, 0.8),
        rim=rim,
        spokes=int(rng.choice([5, 5, 6, 10])),
        cladding=style == "suv" and rng.random() < 0.7,
        **dims,
    )


# --------------------------------------------------------------------------- drawing one car


@dataclass(frozen=True)
class _Frame:
    """Where one car's parts go on its working canvas (full-resolution pixels)."""

    width: int
    height: int
    L: float  # the car's length
    gy: float  # ground
    cx: float  # the canvas's centre
    xr: float  # rear end
    xf: float  # front end
    r: float  # wheel radius
    px: float  # one working-canvas pixel for a typical car length
    yb: float  # beltline
    yt: float  # roof
    ys: float  # sill / bumper bottom
    ws_base: tuple[float, float]  # the windscreen's foot
    roof_f: tuple[float, float]
    c_base: tuple[float, float]  # the rear pillar's foot
    roof_r: tuple[float, float]
    roof_mid: tuple[float, float]
    body: np.ndarray  # the smoothed silhouette


def _frame(car: Car, k: float) -> _Frame:
    cw, ch = 2 * int(round(_CANVAS_W * k / 2)), 2 * int(round(_CANVAS_H * k / 2))  # even: reduced 2x exactly
    L = car.length * _CANVAS_W * k
    gy = _GROUND_Y * k
    cx = cw / 2.0
    xr, xf = cx - L / 2, cx + L / 2
    r = car.wheel * L
    yb = gy - car.belt * L
    yt = gy - car.roof * L
    ys = gy - r * (0.72 if car.style == "suv" else 0.5)
    boot, rake_r, rake_f = {"saloon": (0.20, 0.13, 0.15), "hatchback": (0.035, 0.085, 0.15),
                            "estate": (0.025, 0.045, 0.15)}.get(car.style, (0.02, 0.05, 0.12))
    ws_base = (xf - car.bonnet * L, yb - 0.004 * L)
    roof_f = (ws_base[0] - rake_f * L, yt)
    if car.style == "saloon":
        c_base = (xr + boot * L, yb - 0.016 * L)
        rear_pts = [(xr + 0.012 * L, yb + 0.012 * L), (xr + 0.03 * L, yb - 0.012 * L), c_base]
    else:
        c_base = (xr + boot * L * 0.6, yb - 0.02 * L)
        rear_pts = [(xr + 0.004 * L, yb + 0.01 * L), c_base]
    roof_r = (xr + boot * L + rake_r * L, yt + 0.006 * L)
    roof_mid = ((roof_r[0] + roof_f[0]) / 2, yt - 0.008 * L)
    body = np.array([(xr + 0.04 * L, ys), (xr + 0.002 * L, ys - 0.045 * L), *rear_pts, roof_r, roof_mid, roof_f,
                     ws_base, (xf - 0.06 * L, yb + 0.022 * L), (xf - 0.004 * L, yb + 0.05 * L),
                     (xf + 0.004 * L, ys - 0.04 * L), (xf - 0.03 * L, ys)])
    return _Frame(cw, ch, L, gy, cx, xr, xf, r, L / 560.0, yb, yt, ys, ws_base, roof_f, c_base, roof_r, roof_mid,
                  _chaikin(body, 3))


class _Canvas:
    """The two images a car is drawn on: `label` (which part covers each pixel) and `flat` (the colours
    of the parts drawn in fixed colours, black elsewhere)."""

    def __init__(self, width: int, height: int):
        self.label = Image.new("L", (width, height), _BG)
        self.flat = Image.new("RGB", (width, height), (0, 0, 0))
        self._dl, self._df = ImageDraw.Draw(self.label), ImageDraw.Draw(self.flat)

    def shape(self, kind: str, geom, lab: int, colour=(0, 0, 0), width: int = 0) -> None:
        """A polygon, filled ellipse, line or ring (an ellipse's outline) of part `lab`."""
        dl, df = self._dl, self._df
        if lab != _FLAT:
            colour = (0, 0, 0)
        if kind == "poly":
            dl.polygon(geom, fill=lab)
            df.polygon(geom, fill=colour)
        elif kind == "ellipse":
            dl.ellipse(geom, fill=lab)
            df.ellipse(geom, fill=colour)
        elif kind == "line":
            dl.line(geom, fill=lab, width=width)
            df.line(geom, fill=colour, width=width)
        elif kind == "ring":
            dl.ellipse(geom, outline=lab, width=width)
            df.ellipse(geom, outline=colour, width=width)


@dataclass(frozen=True)
class _Glass:
    """The side windows: their outline, bottom and top edges, and the B-pillar's place and width."""

    win: np.ndarray
    ybw: float
    ytw: float
    bx: float
    pw: float


def _draw_body(canvas: _Canvas, f: _Frame) -> None:
    canvas.shape("poly", _poly(f.body), _PAINT)
    # a darker rim along the silhouette keeps white cars visible on the white background
    outline = _poly(np.vstack([f.body, f.body[:1]]))
    canvas.shape("line", outline, _EDGE, width=max(2, int(round(0.004 * f.L))))


def _draw_glass(canvas: _Canvas, f: _Frame, style: str) -> _Glass:
    L, px = f.L, f.px
    ybw = f.yb - 0.012 * L
    ytw = f.yt + 0.024 * L
    a_in = 0.022 * L
    c_in = (0.05 if style == "saloon" else 0.03) * L
    win = np.array([(_lerp_x(f.c_base, f.roof_r, ybw) + c_in, ybw),
                    (_lerp_x(f.c_base, f.roof_r, ytw) + c_in * 0.8, ytw),
                    (f.roof_mid[0], ytw - 0.006 * L),
                    (_lerp_x(f.ws_base, f.roof_f, ytw) - a_in, ytw),
                    (_lerp_x(f.ws_base, f.roof_f, ybw) - a_in * 0.6, ybw)])
    canvas.shape("poly", _poly(_chaikin(win, 2)), _GLASS)
    # B-pillar (and rear pillar for long roofs): dark frames across the glass
    x_lo, x_hi = win[0, 0], win[-1, 0]
    bx = x_lo + (x_hi - x_lo) * (0.5 if style in ("saloon", "hatchback") else 0.55)
    pw = 0.016 * L
    canvas.shape("poly", [(bx - pw, ybw + 2 * px), (bx + pw * 0.2, ybw + 2 * px),
                          (bx + pw * 0.2 - 0.02 * L, ytw - 4 * px), (bx - pw - 0.02 * L, ytw - 4 * px)], _FLAT, _DARK)
    if style in ("estate", "suv"):
        dx = x_lo + (x_hi - x_lo) * 0.2
        canvas.shape("poly", [(dx - pw * 0.8, ybw + 2 * px), (dx + pw * 0.8, ybw + 2 * px),
                              (dx + pw * 0.5, ytw - 4 * px), (dx - pw, ytw - 4 * px)],
                     _FLAT if style == "suv" else _PAINT, _DARK)
    # window rubber along the sill
    canvas.shape("line", [(win[0, 0], ybw + px), (win[-1, 0], ybw + px)], _FLAT, _DARK, width=max(2, int(0.006 * L)))
    return _Glass(win, ybw, ytw, bx, pw)


def _draw_doors(canvas: _Canvas, f: _Frame, g: _Glass, cladding: bool) -> None:
    """Door shut lines, handles, mirror, then the lower body: sills, cladding, bumper grilles."""
    L, px, yb, ys, xr, xf = f.L, f.px, f.yb, f.ys, f.xr, f.xf
    lw = max(1, int(round(0.0035 * L)))
    door_bottom = ys - 0.03 * L
    front_door = _lerp_x(f.ws_base, f.roof_f, g.ybw) - 0.005 * L
    for x_top, lean in ((g.bx - g.pw * 0.4, 0.0), (front_door, 0.01), (g.win[0, 0] + 0.01 * L, -0.01)):
        canvas.shape("line", [(x_top, g.ybw + 3 * px), (x_top + lean * L, door_bottom)], _DARK_PAINT, width=lw)
    hy = yb + 0.03 * L
    for hx in (g.bx + 0.02 * L, g.win[0, 0] + 0.05 * L):
        canvas.shape("poly", [(hx, hy), (hx + 0.035 * L, hy), (hx + 0.035 * L, hy + 0.008 * L), (hx, hy + 0.008 * L)],
                     _DARK_PAINT)
    mx = f.ws_base[0] - 0.03 * L
    canvas.shape("poly", [(mx - 0.02 * L, yb - 0.01 * L), (mx + 0.015 * L, yb - 0.035 * L),
                          (mx + 0.03 * L, yb - 0.03 * L), (mx + 0.025 * L, yb + 0.005 * L),
                          (mx - 0.015 * L, yb + 0.005 * L)], _PAINT)
    if cladding:
        clad = (52, 53, 56)
        canvas.shape("poly", [(xr + 0.03 * L, ys + 1), (xf - 0.025 * L, ys + 1), (xf - 0.02 * L, ys - 0.035 * L),
                              (xr + 0.03 * L, ys - 0.035 * L)], _FLAT, clad)
    canvas.shape("poly", [(xf - 0.075 * L, ys - 0.032 * L), (xf - 0.012 * L, ys - 0.032 * L),
                          (xf - 0.016 * L, ys - 0.015 * L), (xf - 0.07 * L, ys - 0.015 * L)], _FLAT, (35, 36, 40))


def _draw_lights(canvas: _Canvas, f: _Frame) -> None:
    L, yb, ys, xr, xf = f.L, f.yb, f.ys, f.xr, f.xf
    hl = [(xf - 0.085 * L, yb + 0.024 * L), (xf - 0.03 * L, yb + 0.036 * L), (xf - 0.005 * L, yb + 0.055 * L),
          (xf - 0.06 * L, yb + 0.058 * L)]
    canvas.shape("poly", hl, _FLAT, (150, 152, 158))
    hl_in = [(x + 0.004 * L * (1 if i in (0, 3) else -1), y + 0.003 * L * (1 if i < 2 else -1))
             for i, (x, y) in enumerate(hl)]
    canvas.shape("poly", hl_in, _FLAT, (232, 236, 240))
    tl = [(xr + 0.006 * L, yb + 0.018 * L), (xr + 0.065 * L, yb + 0.012 * L), (xr + 0.06 * L, yb + 0.045 * L),
          (xr + 0.008 * L, yb + 0.05 * L)]
    canvas.shape("poly", tl, _FLAT, (150, 14, 20))
    canvas.shape("poly", [(xr + 0.012 * L, yb + 0.022 * L), (xr + 0.055 * L, yb + 0.018 * L),
                          (xr + 0.054 * L, yb + 0.03 * L), (xr + 0.012 * L, yb + 0.033 * L)], _FLAT, (205, 40, 40))
    canvas.shape("poly", [(xf - 0.09 * L, ys - 0.05 * L), (xf - 0.06 * L, ys - 0.05 * L),
                          (xf - 0.06 * L, ys - 0.042 * L), (xf - 0.09 * L, ys - 0.042 * L)],
                 _FLAT, (220, 140, 40))  # side indicator


def _draw_wheels(canvas: _Canvas, f: _Frame, car: Car, rng: np.random.Generator) -> None:
    r = f.r
    wy = f.gy - r
    for wx in (f.xr + car.overhang_r * f.L, f.xf - car.overhang_f * f.L):
        ar = r * (1.2 if car.cladding else 1.12)
        canvas.shape("ellipse", [wx - ar, wy - ar - 0.02 * r, wx + ar, wy + ar], _FLAT, (18, 18, 20))
        if car.cladding:
            canvas.shape("ellipse", [wx - r * 1.1, wy - r * 1.1, wx + r * 1.1, wy + r * 1.1], _FLAT, (14, 14, 16))
        canvas.shape("ellipse", [wx - r, wy - r, wx + r, wy + r], _FLAT, (30, 30, 32))
        rr = r * 0.66
        canvas.shape("ellipse", [wx - rr, wy - rr, wx + rr, wy + rr], _FLAT, (48, 48, 52))
        phase = rng.uniform(0, 2 * math.pi)
        spoke_w = max(2, int(r * (0.28 if car.spokes <= 6 else 0.13)))
        for i in range(car.spokes):
            ang = phase + 2 * math.pi * i / car.spokes
            canvas.shape("line", [(wx, wy), (wx + math.cos(ang) * rr * 0.95, wy + math.sin(ang) * rr * 0.95)], _FLAT,
                         car.rim, width=spoke_w)
        canvas.shape("ring", [wx - rr, wy - rr, wx + rr, wy + rr], _FLAT, car.rim, width=max(2, int(r * 0.09)))
        hr = r * 0.16
        canvas.shape("ellipse", [wx - hr, wy - hr, wx + hr, wy + hr], _FLAT, tuple(int(c * 0.8) for c in car.rim))


def _shade(canvas: _Canvas, f: _Frame, g: _Glass, car: Car, rng: np.random.Generator) -> Layer:
    """Shading at the reduced (2x box-filtered) resolution from per-label coverage, which both
    anti-aliases the edges and keeps the arithmetic small; only the car's bounding box (in whole
    reduced pixels) is kept."""
    L, xr, xf, yt, yb, ys, ytw, ybw = f.L, f.xr, f.xf, f.yt, f.yb, f.ys, g.ytw, g.ybw
    x0 = max(0, int(math.floor(xr / 2)) - 2)
    x1 = min(f.width // 2, int(math.ceil(xf / 2)) + 2)
    y0 = max(0, int(math.floor((yt - 0.02 * L) / 2)) - 2)
    y1 = f.height // 2
    box = (2 * x0, 2 * y0, 2 * x1, 2 * y1)
    label = canvas.label.crop(box)
    flat = canvas.flat.crop(box)
    h, w = y1 - y0, x1 - x0

    def coverage(which: int) -> np.ndarray:
        small = label.point(_ONE_HOT_LUT[which]).reduce(2)
        return np.asarray(small, dtype=np.float32)[:, :, None] * np.float32(1 / 255)

    cov_paint, cov_dark, cov_glass, cov_edge = (coverage(part) for part in (_PAINT, _DARK_PAINT, _GLASS, _EDGE))
    alpha = np.asarray(label.point(_NOT_BG_LUT).reduce(2), dtype=np.float32)[:, :, None] * np.float32(1 / 255)
    flat_small = np.asarray(flat.reduce(2), dtype=np.float32)  # flat colours, black elsewhere

    # pixel centres of the reduced grid, in full-resolution canvas coordinates
    ys_idx = (np.arange(h, dtype=np.float32)[:, None] + y0) * 2 + 0.5
    xs_idx = (np.arange(w, dtype=np.float32)[None, :] + x0) * 2 + 0.5

    # paint: lighter on the upper surfaces, darker towards the sill, a bright shoulder line and
    # a dark crease under it, slightly darker at the nose and tail; shut lines and the
    # silhouette rim are darker paint
    t = np.clip((ys_idx - yt) / max(1.0, ys - yt), 0.0, 1.0)
    shade_y = 1.1 - 0.42 * t ** 1.4
    shade_y = shade_y + 0.12 * np.exp(-(((ys_idx - (yb + 0.006 * L)) / (0.008 * L)) ** 2))
    shade_y = shade_y - 0.1 * np.exp(-(((ys_idx - (yb + 0.045 * L)) / (0.01 * L)) ** 2))
    shade_x = 1.0 - 0.14 * np.clip(np.abs(xs_idx - f.cx) / (L / 2), 0, 1) ** 4
    paint_w = (shade_y * shade_x)[:, :, None] * (cov_paint + 0.5 * cov_dark + 0.72 * cov_edge)
    paint = np.array(car.paint, dtype=np.float32)

    # glass: dark, sky reflected at the top, a diagonal reflection streak
    tg = np.clip((ys_idx - ytw) / max(1.0, ybw - ytw), 0.0, 1.0)
    sky = np.array([150, 165, 182], dtype=np.float32) * car.glass_tint
    deep = np.array([28, 32, 38], dtype=np.float32)
    streak_c = rng.uniform(xr + 0.3 * L, xr + 0.7 * L)
    streak = (0.21 * car.glass_tint) * np.exp(-(((xs_idx - streak_c + (ys_idx - yt) * 0.8) / (0.03 * L)) ** 2))
    glass_col = deep + (sky - deep) * ((1 - tg) ** 1.5)[:, :, None]  # (h, 1, 3)
    # glass + (255 - glass) * streak, weighted by glass coverage
    glass_w = cov_glass * (1.0 - streak[:, :, None])
    premult = flat_small + paint_w * paint + glass_w * glass_col + (cov_glass * streak[:, :, None]) * 255.0
    rgb = np.where(alpha > 0.0, premult / np.maximum(alpha, 1e-6), 255.0)
    return Layer(
        rgb=Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)),
        alpha=Image.fromarray(np.clip(alpha[:, :, 0] * 255.0 + 0.5, 0, 255).astype(np.uint8)),
        paint=cov_paint[:, :, 0],
        centre_x=f.cx / 2 - x0,
        ground_y=f.gy / 2 - y0,
        car_len=L / 2,
        roof_y=yt / 2 - y0,
    )


def draw_car(car: Car, k: float, rng: np.random.Generator) -> Layer:
    """Draw the side view of `car` (at scale k of the working canvas) on a transparent canvas; return it
    reduced 2x with per-pixel masks."""
    f = _frame(car, k)
    canvas = _Canvas(f.width, f.height)
    _draw_body(canvas, f)
    glass = _draw_glass(canvas, f, car.style)
    _draw_doors(canvas, f, glass, car.cladding)
    _draw_lights(canvas, f)
    _draw_wheels(canvas, f, car, rng)
    return _shade(canvas, f, glass, car, rng)
