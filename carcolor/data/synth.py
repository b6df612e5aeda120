"""Synthetic DVM-Car: procedurally drawn car photos in DVM-Car's naming and folder layout.

The real DVM-Car image archive (``resized_DVM``) is large and cannot be fetched in every
environment, so the project's default dataset is generated here.  The generator writes

    root/resized_DVM/{Maker}/{Genmodel}/{Year}/{Color}/
        {Maker}$${Genmodel}$${Year}$${Color}$${Genmodel_ID}$${AdvIndex}$$image_{N}.jpg

exactly like the real archive: 300x300 RGB JPEGs, the car cut out and placed on a white
background, several photos per advert (the same car seen with a slightly different camera
position, scale, perspective, side and lighting).  Maker and model names deliberately include
spaces, apostrophes, ``+``, hyphens and underscores, as the real names do, so that the
parsing and preparation code is exercised on the awkward cases.

The colour task is made deliberately non-trivial: paint shades vary per advert (dark and light
variants, metallic finishes), exposure and white balance vary per photo, and specular highlights
wash colour out.  The look-alike groups (silver/grey/white, brown/beige/orange) overlap in
mean colour, as they do in the real photographs.

Determinism: every advert draws its random numbers from
``numpy.random.default_rng([seed, colour_index, advert_index])`` where ``colour_index`` is the
colour's position in :data:`COLOURS` (not in the caller's list).  Identical arguments therefore
give byte-identical files, and changing ``adverts_per_colour`` or the colour subset leaves the
adverts that exist in both runs unchanged.
"""

from __future__ import annotations

import colorsys
import contextlib
import functools
import math
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from .colours import COLOURS, LOOKALIKE_GROUPS, PAINT_JITTER

__all__ = [
    "COLOURS",
    "LOOKALIKE_GROUPS",
    "MAKERS",
    "BODY_STYLES",
    "generate",
]

COMMAND = "generate"

BODY_STYLES: tuple[str, ...] = ("saloon", "hatchback", "estate", "suv")

# (maker, maker id, ((model, model id, body styles the model comes in), ...)).
# Genmodel_ID = f"{maker id}_{model id}".  Names mirror the awkward characters of the real data.
MAKERS: tuple[tuple[str, int, tuple[tuple[str, int, tuple[str, ...]], ...]], ...] = (
    ("Land Rover", 47, (("Range Rover Evoque", 12, ("suv",)), ("Discovery Sport", 7, ("suv",)))),
    ("Citroen", 16, (("Grand C4 Picasso", 14, ("estate",)), ("C3", 5, ("hatchback",)))),
    ("Kia", 44, (("Pro_Cee'd", 20, ("hatchback",)), ("Sportage", 24, ("suv",)), ("Cee'd", 3, ("hatchback", "estate")))),
    ("Nissan", 64, (("Micra C+C", 25, ("hatchback",)), ("Pulsar", 32, ("hatchback",)), ("X-Trail", 41, ("suv",)))),
    ("Mercedes-Benz", 59, (("C-Class", 8, ("saloon", "estate")), ("E-Class", 11, ("saloon", "estate")))),
    ("Alfa Romeo", 2, (("Giulietta", 9, ("hatchback",)), ("159", 1, ("saloon", "estate")))),
    ("Volkswagen", 95, (("Golf", 17, ("hatchback", "estate")), ("Passat", 28, ("saloon", "estate")))),
    ("Ford", 29, (("Focus", 21, ("hatchback", "estate", "saloon")), ("S-MAX", 39, ("estate",)))),
)

_MODELS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = tuple(
    (maker, model, f"{maker_id}_{model_id}", styles)
    for maker, maker_id, models in MAKERS
    for model, model_id, styles in models
)

# Working canvas for one car (side view), before the 2x box-filter reduction; scaled with `size`.
_CANVAS_W, _CANVAS_H = 640, 320
_GROUND_Y = 296.0

# Layer labels for the car drawing.
_BG, _PAINT, _GLASS, _FLAT, _DARK_PAINT, _EDGE = 0, 1, 2, 3, 4, 5
_ONE_HOT_LUT = {k: [255 if v == k else 0 for v in range(256)] for k in range(6)}
_NOT_BG_LUT = [0] + [255] * 255


@dataclass(frozen=True)
class _Car:
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


def _perspective_coeffs(dst: Sequence[tuple[float, float]], src: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """Coefficients for PIL's PERSPECTIVE transform mapping output points `dst` to input points `src`."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(dst, src)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    return tuple(float(c) for c in np.linalg.solve(a, b))


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


def _sample_car(colour: str, style: str, rng: np.random.Generator) -> _Car:
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
    return _Car(
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


@dataclass
class _Layer:
    rgb: Image.Image  # RGB, reduced resolution, cropped to the car
    alpha: Image.Image  # L, reduced resolution
    paint: np.ndarray  # (h, w) float32 0..1: paint coverage (for highlights)
    centre_x: float  # car centre, reduced layer px
    ground_y: float
    car_len: float
    roof_y: float


def _draw_car(car: _Car, k: float, rng: np.random.Generator) -> _Layer:
    """Draw the side view of `car` on a transparent canvas; return it reduced 2x with per-pixel masks."""
    cw, ch = 2 * int(round(_CANVAS_W * k / 2)), 2 * int(round(_CANVAS_H * k / 2))  # even: reduced 2x exactly
    L = car.length * _CANVAS_W * k
    gy = _GROUND_Y * k
    cx = cw / 2.0
    xr, xf = cx - L / 2, cx + L / 2
    r = car.wheel * L
    px = L / 560.0  # one working-canvas pixel for a typical car length
    yb = gy - car.belt * L  # beltline
    yt = gy - car.roof * L  # roof
    ys = gy - r * (0.72 if car.style == "suv" else 0.5)  # sill / bumper bottom

    style = car.style
    if style == "saloon":
        boot, rake_r, rake_f = 0.20, 0.13, 0.15
    elif style == "hatchback":
        boot, rake_r, rake_f = 0.035, 0.085, 0.15
    elif style == "estate":
        boot, rake_r, rake_f = 0.025, 0.045, 0.15
    else:
        boot, rake_r, rake_f = 0.02, 0.05, 0.12
    ws_base = (xf - car.bonnet * L, yb - 0.004 * L)
    roof_f = (ws_base[0] - rake_f * L, yt)
    if style == "saloon":
        c_base = (xr + boot * L, yb - 0.016 * L)
        rear_pts = [(xr + 0.012 * L, yb + 0.012 * L), (xr + 0.03 * L, yb - 0.012 * L), c_base]
    else:
        c_base = (xr + boot * L * 0.6, yb - 0.02 * L)
        rear_pts = [(xr + 0.004 * L, yb + 0.01 * L), c_base]
    roof_r = (xr + boot * L + rake_r * L, yt + 0.006 * L)
    roof_mid = ((roof_r[0] + roof_f[0]) / 2, yt - 0.008 * L)
    body = np.array(
        [
            (xr + 0.04 * L, ys),
            (xr + 0.002 * L, ys - 0.045 * L),
            *rear_pts,
            roof_r,
            roof_mid,
            roof_f,
            ws_base,
            (xf - 0.06 * L, yb + 0.022 * L),
            (xf - 0.004 * L, yb + 0.05 * L),
            (xf + 0.004 * L, ys - 0.04 * L),
            (xf - 0.03 * L, ys),
        ]
    )
    body_s = _chaikin(body, 3)

    label = Image.new("L", (cw, ch), _BG)
    flat = Image.new("RGB", (cw, ch), (0, 0, 0))
    dl, df = ImageDraw.Draw(label), ImageDraw.Draw(flat)

    def shape(kind: str, geom, lab: int, colour=(0, 0, 0), width: int = 0) -> None:
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

    shape("poly", _poly(body_s), _PAINT)
    # a darker rim along the silhouette keeps white cars visible on the white background
    outline = _poly(np.vstack([body_s, body_s[:1]]))
    shape("line", outline, _EDGE, width=max(2, int(round(0.004 * L))))

    # --- glasshouse
    ybw = yb - 0.012 * L
    ytw = yt + 0.024 * L
    a_in = 0.022 * L
    c_in = (0.05 if style == "saloon" else 0.03) * L
    win = np.array(
        [
            (_lerp_x(c_base, roof_r, ybw) + c_in, ybw),
            (_lerp_x(c_base, roof_r, ytw) + c_in * 0.8, ytw),
            (roof_mid[0], ytw - 0.006 * L),
            (_lerp_x(ws_base, roof_f, ytw) - a_in, ytw),
            (_lerp_x(ws_base, roof_f, ybw) - a_in * 0.6, ybw),
        ]
    )
    win_s = _chaikin(win, 2)
    shape("poly", _poly(win_s), _GLASS)
    dark = (22, 23, 26)
    # B-pillar (and rear pillar for long roofs): dark frames across the glass
    x_lo, x_hi = win[0, 0], win[-1, 0]
    bx = x_lo + (x_hi - x_lo) * (0.5 if style in ("saloon", "hatchback") else 0.55)
    pw = 0.016 * L
    shape("poly", [(bx - pw, ybw + 2 * px), (bx + pw * 0.2, ybw + 2 * px), (bx + pw * 0.2 - 0.02 * L, ytw - 4 * px),
                   (bx - pw - 0.02 * L, ytw - 4 * px)], _FLAT, dark)
    if style in ("estate", "suv"):
        dx = x_lo + (x_hi - x_lo) * 0.2
        shape("poly", [(dx - pw * 0.8, ybw + 2 * px), (dx + pw * 0.8, ybw + 2 * px), (dx + pw * 0.5, ytw - 4 * px),
                       (dx - pw, ytw - 4 * px)], _FLAT if style == "suv" else _PAINT, dark)
    # window rubber along the sill
    shape("line", [(win[0, 0], ybw + px), (win[-1, 0], ybw + px)], _FLAT, dark, width=max(2, int(0.006 * L)))

    # --- door shut lines, handles, mirror
    lw = max(1, int(round(0.0035 * L)))
    door_bottom = ys - 0.03 * L
    front_door = _lerp_x(ws_base, roof_f, ybw) - 0.005 * L
    for x_top, lean in ((bx - pw * 0.4, 0.0), (front_door, 0.01), (win[0, 0] + 0.01 * L, -0.01)):
        shape("line", [(x_top, ybw + 3 * px), (x_top + lean * L, door_bottom)], _DARK_PAINT, width=lw)
    hy = yb + 0.03 * L
    for hx in (bx + 0.02 * L, win[0, 0] + 0.05 * L):
        shape("poly", [(hx, hy), (hx + 0.035 * L, hy), (hx + 0.035 * L, hy + 0.008 * L), (hx, hy + 0.008 * L)],
              _DARK_PAINT)
    mx = ws_base[0] - 0.03 * L
    shape("poly", [(mx - 0.02 * L, yb - 0.01 * L), (mx + 0.015 * L, yb - 0.035 * L), (mx + 0.03 * L, yb - 0.03 * L),
                   (mx + 0.025 * L, yb + 0.005 * L), (mx - 0.015 * L, yb + 0.005 * L)], _PAINT)

    # --- lower body: sills, cladding, bumper grilles
    if car.cladding:
        clad = (52, 53, 56)
        shape("poly", [(xr + 0.03 * L, ys + 1), (xf - 0.025 * L, ys + 1), (xf - 0.02 * L, ys - 0.035 * L),
                       (xr + 0.03 * L, ys - 0.035 * L)], _FLAT, clad)
    shape("poly", [(xf - 0.075 * L, ys - 0.032 * L), (xf - 0.012 * L, ys - 0.032 * L),
                   (xf - 0.016 * L, ys - 0.015 * L), (xf - 0.07 * L, ys - 0.015 * L)], _FLAT, (35, 36, 40))

    # --- lights
    hl = [(xf - 0.085 * L, yb + 0.024 * L), (xf - 0.03 * L, yb + 0.036 * L), (xf - 0.005 * L, yb + 0.055 * L),
          (xf - 0.06 * L, yb + 0.058 * L)]
    shape("poly", hl, _FLAT, (150, 152, 158))
    hl_in = [(x + 0.004 * L * (1 if i in (0, 3) else -1), y + 0.003 * L * (1 if i < 2 else -1))
             for i, (x, y) in enumerate(hl)]
    shape("poly", hl_in, _FLAT, (232, 236, 240))
    tl = [(xr + 0.006 * L, yb + 0.018 * L), (xr + 0.065 * L, yb + 0.012 * L), (xr + 0.06 * L, yb + 0.045 * L),
          (xr + 0.008 * L, yb + 0.05 * L)]
    shape("poly", tl, _FLAT, (150, 14, 20))
    shape("poly", [(xr + 0.012 * L, yb + 0.022 * L), (xr + 0.055 * L, yb + 0.018 * L), (xr + 0.054 * L, yb + 0.03 * L),
                   (xr + 0.012 * L, yb + 0.033 * L)], _FLAT, (205, 40, 40))
    shape("poly", [(xf - 0.09 * L, ys - 0.05 * L), (xf - 0.06 * L, ys - 0.05 * L), (xf - 0.06 * L, ys - 0.042 * L),
                   (xf - 0.09 * L, ys - 0.042 * L)], _FLAT, (220, 140, 40))  # side indicator

    # --- wheels
    wheels = (xr + car.overhang_r * L, xf - car.overhang_f * L)
    wy = gy - r
    for wx in wheels:
        ar = r * (1.2 if car.cladding else 1.12)
        shape("ellipse", [wx - ar, wy - ar - 0.02 * r, wx + ar, wy + ar], _FLAT, (18, 18, 20))
        if car.cladding:
            shape("ellipse", [wx - r * 1.1, wy - r * 1.1, wx + r * 1.1, wy + r * 1.1], _FLAT, (14, 14, 16))
        shape("ellipse", [wx - r, wy - r, wx + r, wy + r], _FLAT, (30, 30, 32))
        rr = r * 0.66
        shape("ellipse", [wx - rr, wy - rr, wx + rr, wy + rr], _FLAT, (48, 48, 52))
        phase = rng.uniform(0, 2 * math.pi)
        spoke_w = max(2, int(r * (0.28 if car.spokes <= 6 else 0.13)))
        for i in range(car.spokes):
            ang = phase + 2 * math.pi * i / car.spokes
            shape("line", [(wx, wy), (wx + math.cos(ang) * rr * 0.95, wy + math.sin(ang) * rr * 0.95)], _FLAT,
                  car.rim, width=spoke_w)
        ring = max(2, int(r * 0.09))
        dl.ellipse([wx - rr, wy - rr, wx + rr, wy + rr], outline=_FLAT, width=ring)
        df.ellipse([wx - rr, wy - rr, wx + rr, wy + rr], outline=car.rim, width=ring)
        hr = r * 0.16
        shape("ellipse", [wx - hr, wy - hr, wx + hr, wy + hr], _FLAT, tuple(int(c * 0.8) for c in car.rim))

    # ----------------------------------------------------------------- shading (numpy)
    # Shading is computed at the reduced (2x box-filtered) resolution from per-label coverage,
    # which both anti-aliases the edges and keeps the arithmetic small; only the car's bounding
    # box (in whole reduced pixels) is kept.
    x0 = max(0, int(math.floor(xr / 2)) - 2)
    x1 = min(cw // 2, int(math.ceil(xf / 2)) + 2)
    y0 = max(0, int(math.floor((yt - 0.02 * L) / 2)) - 2)
    y1 = ch // 2
    box = (2 * x0, 2 * y0, 2 * x1, 2 * y1)
    label = label.crop(box)
    flat = flat.crop(box)
    h, w = y1 - y0, x1 - x0

    def coverage(which: int) -> np.ndarray:
        small = label.point(_ONE_HOT_LUT[which]).reduce(2)
        return np.asarray(small, dtype=np.float32)[:, :, None] * np.float32(1 / 255)

    cov_paint = coverage(_PAINT)
    cov_dark = coverage(_DARK_PAINT)
    cov_glass = coverage(_GLASS)
    cov_edge = coverage(_EDGE)
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
    shade_x = 1.0 - 0.14 * np.clip(np.abs(xs_idx - cx) / (L / 2), 0, 1) ** 4
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
    return _Layer(
        rgb=Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)),
        alpha=Image.fromarray(np.clip(alpha[:, :, 0] * 255.0 + 0.5, 0, 255).astype(np.uint8)),
        paint=cov_paint[:, :, 0],
        centre_x=cx / 2 - x0,
        ground_y=gy / 2 - y0,
        car_len=L / 2,
        roof_y=yt / 2 - y0,
    )


@functools.lru_cache(maxsize=1)
def _shadow_sprite() -> Image.Image:
    """A soft elliptical blob, resized per photo (read-only: callers resize, which copies)."""
    im = Image.new("L", (160, 40), 0)
    ImageDraw.Draw(im).ellipse([16, 12, 144, 28], fill=255)
    return im.filter(ImageFilter.GaussianBlur(5))


def _photo(layer: _Layer, car: _Car, size: int, rng: np.random.Generator) -> Image.Image:
    """One photo of the car: lighting, camera placement, shadow, white background."""
    h, w = layer.paint.shape
    # lighting: exposure, white balance, specular highlights that wash the colour out
    gain = math.exp(rng.normal(0.0, 0.15))
    tint = np.exp(rng.normal(0.0, 0.015, size=3))
    ys = np.arange(h, dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)
    L = layer.car_len
    spec = np.zeros((h, w), dtype=np.float32)
    for _ in range(int(rng.integers(1, 3))):
        hx = layer.centre_x + rng.uniform(-0.4, 0.4) * L
        hy = layer.ground_y - rng.uniform(0.14, 0.3) * L
        sx, sy = rng.uniform(0.06, 0.2) * L, rng.uniform(0.02, 0.05) * L
        strength = car.metallic * rng.uniform(0.35, 0.9)
        # separable Gaussian blob
        spec += np.outer(strength * np.exp(-(((ys - hy) / sy) ** 2)), np.exp(-(((xs - hx) / sx) ** 2)))
    spec = np.clip(spec * layer.paint, 0.0, 0.95)
    scale = gain * tint
    lut = [min(255, int(v * scale[c] + 0.5)) for c in range(3) for v in range(256)]
    lit = layer.rgb.point(lut)
    white = Image.new("RGB", lit.size, (255, 255, 255))
    car_img = Image.composite(white, lit, Image.fromarray((spec * 255.0 + 0.5).astype(np.uint8)))
    car_img.putalpha(layer.alpha)

    # camera: scale, position, slight perspective and roll, which side of the car
    f = size * rng.uniform(0.8, 0.95) / L
    car_h = (layer.ground_y - layer.roof_y) * f
    xc = size / 2 + rng.normal(0.0, 0.015) * size
    y_ground = size / 2 + car_h / 2 + rng.normal(0.0, 0.025) * size
    p = rng.uniform(-0.07, 0.07)
    roll = rng.normal(0.0, 0.012)
    flip = rng.random() < 0.5
    x_left = xc - layer.centre_x * f
    x_right = x_left + w * f
    y_top_rel, y_bot_rel = -layer.ground_y * f, (h - layer.ground_y) * f
    dst = [
        (x_left, y_ground - roll * w * f / 2 + y_top_rel * (1 + p)),
        (x_left, y_ground - roll * w * f / 2 + y_bot_rel * (1 + p)),
        (x_right, y_ground + roll * w * f / 2 + y_top_rel * (1 - p)),
        (x_right, y_ground + roll * w * f / 2 + y_bot_rel * (1 - p)),
    ]
    src = [(0, 0), (0, h), (w, 0), (w, h)]
    if flip:
        src = [(w, 0), (w, h), (0, 0), (0, h)]
    # transform only into the bounding box of the car (clipped to the image), then paste
    bx0 = max(0, int(math.floor(min(x for x, _ in dst))))
    by0 = max(0, int(math.floor(min(y for _, y in dst))))
    bx1 = min(size, int(math.ceil(max(x for x, _ in dst))))
    by1 = min(size, int(math.ceil(max(y for _, y in dst))))
    coeffs = _perspective_coeffs([(x - bx0, y - by0) for x, y in dst], src)
    placed = car_img.transform((bx1 - bx0, by1 - by0), Image.Transform.PERSPECTIVE, coeffs,
                               resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255, 0))

    # soft shadow on the ground, then the car on top
    bg = Image.new("L", (size, size), 255)
    sw = int(L * f * rng.uniform(1.05, 1.2))
    sh = max(4, int(sw * rng.uniform(0.14, 0.2)))
    strength = rng.uniform(0.3, 0.55)
    sprite = _shadow_sprite().resize((sw, sh), Image.Resampling.BILINEAR)
    # pasting grey level g through the blob mask m gives 255 - (255 - g) * m
    bg.paste(int(round(255 * (1 - strength))), (int(xc - sw / 2), int(y_ground - sh * 0.55)), sprite)
    photo = Image.merge("RGBA", (bg, bg, bg, Image.new("L", (size, size), 255)))
    photo.alpha_composite(placed, dest=(bx0, by0))
    return photo.convert("RGB")


# --------------------------------------------------------------------------- public API


def _check_colours(colours: Sequence[str]) -> list[str]:
    if isinstance(colours, str):
        colours = [colours]
    out = list(colours)
    if not out:
        raise ValueError(f"colours must not be empty; valid choices: {', '.join(COLOURS)}")
    for c in out:
        if c not in COLOURS:
            raise ValueError(f"unknown colour {c!r}; valid choices: {', '.join(COLOURS)}")
    dup = sorted({c for c in out if out.count(c) > 1})
    if dup:
        raise ValueError(f"duplicate colour(s) {dup}; valid choices: {', '.join(COLOURS)}")
    return out


_TMP_NAME = re.compile(r"\..+\.\d+\.tmp")  # _write_jpeg's temporary names


def _write_jpeg(img: Image.Image, path: Path, quality: int) -> None:
    """Write via a temporary name and rename, so a final name never holds a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        img.save(tmp, format="JPEG", quality=quality)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return int(workers)


def _advert(root: Path, colour: str, ci: int, ai: int, seed: int, photos_per_advert: int, size: int,
            quality: int) -> list[dict]:
    """Draw one advert (one car, ``photos_per_advert`` photos), write its JPEGs, return their rows."""
    k = size / 300.0  # drawing scale: the working canvas is about twice the output resolution
    rng = np.random.default_rng([seed, ci, ai])
    maker, model, gid, styles = _MODELS[int(rng.integers(len(_MODELS)))]
    style = styles[int(rng.integers(len(styles)))]
    year = int(rng.integers(2006, 2021))
    adv_index = 1 + ci + len(COLOURS) * ai  # unique over all colours, hence per Genmodel_ID
    car = _sample_car(colour, style, rng)
    layer = _draw_car(car, k, rng)
    numbers = np.sort(rng.choice(np.arange(1, 2 * photos_per_advert + 1), size=photos_per_advert, replace=False))
    folder = root / "resized_DVM" / maker / model / str(year) / colour
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in numbers:
        img = _photo(layer, car, size, rng)
        name = f"{maker}$${model}$${year}$${colour}$${gid}$${adv_index}$$image_{int(n)}.jpg"
        _write_jpeg(img, folder / name, quality)
        rows.append(dict(path=(folder / name).relative_to(root).as_posix(), maker=maker, genmodel=model, year=year,
                         color=colour, genmodel_id=gid, adv_index=adv_index, image_n=int(n)))
    return rows


def _advert_star(task: tuple) -> list[dict]:
    return _advert(*task)


def generate(
    root: Path,
    *,
    colours: Sequence[str],
    adverts_per_colour: int,
    photos_per_advert: int,
    seed: int = 0,
    size: int = 300,
    quality: int = 90,
    progress: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """Write the tree under root/resized_DVM/... and return one row per written image with columns
    path (relative to root, posix), maker, genmodel, year, color, genmodel_id, adv_index, image_n.

    Every advert is one car (maker, model, year, body style, paint shade) photographed
    ``photos_per_advert`` times; its AdvIndex is unique across all colours and models, so the advert
    key ``Genmodel_ID$$AdvIndex`` identifies one car.  Photos are numbered like the real data
    (``image_N`` with N in 1..2*photos_per_advert, increasing, not necessarily contiguous).
    Existing files with the same names are replaced; other files under ``root`` are left alone, except
    the temporary files of a draw that was killed (``.<name>.<pid>.tmp``), which are removed first.
    ``workers`` processes draw adverts in parallel; the files do not depend on it.
    """
    colours = _check_colours(colours)
    for name, val, lo in (("adverts_per_colour", adverts_per_colour, 1), ("photos_per_advert", photos_per_advert, 1),
                          ("seed", seed, 0), ("size", size, 32), ("quality", quality, 1)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if quality > 100:
        raise ValueError(f"quality must be <= 100, got {quality!r}")
    root = Path(root)
    for stale in (root / "resized_DVM").rglob(".*.tmp") if (root / "resized_DVM").is_dir() else ():
        if _TMP_NAME.fullmatch(stale.name):  # a killed draw's: preparation would count it as a stray file
            stale.unlink()
    canon = {c: i for i, c in enumerate(COLOURS)}
    total = len(colours) * adverts_per_colour * photos_per_advert
    step = max(1, math.ceil(total / 10))
    tasks = [(root, colour, canon[colour], ai, seed, photos_per_advert, size, quality)
             for colour in colours for ai in range(adverts_per_colour)]
    workers = min(_check_workers(workers), len(tasks))
    rows: list[dict] = []
    done = 0
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # Every advert has its own random stream, so drawing them in parallel changes no byte.
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
                "fork" if sys.platform.startswith("linux") else "spawn")))
            results = pool.map(_advert_star, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
        else:
            results = map(_advert_star, tasks)
        for advert_rows in results:  # in task order, whatever order the workers finish in
            for row in advert_rows:
                rows.append(row)
                done += 1
                if progress and (done % step == 0 or done == total):
                    print(f"synth: {done}/{total} images ({100 * done // total}%)", file=sys.stderr, flush=True)
    return pd.DataFrame(rows, columns=["path", "maker", "genmodel", "year", "color", "genmodel_id", "adv_index",
                                       "image_n"])


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="folder that receives resized_DVM/ and images.csv")
    p.add_argument("--settings", required=True, help="JSON: colours, adverts_per_colour, photos_per_advert, seed")
    p.add_argument("--workers", type=int, default=None, help="drawing processes (default: all cores)")


def run(args) -> int:
    """`carcolor generate`: draw the dataset, then write images.csv, the mark of a complete draw."""
    import json

    from .. import atomic

    settings = json.loads(args.settings)
    out = Path(args.out)
    frame = generate(out, colours=settings["colours"], adverts_per_colour=settings["adverts_per_colour"],
                     photos_per_advert=settings["photos_per_advert"], seed=settings["seed"], progress=True,
                     workers=args.workers if args.workers is not None else os.cpu_count() or 1)
    atomic.write_csv(frame, out / "images.csv")  # last: the mark of a complete dataset
    print(f"[generate] {len(frame)} images in {out / 'resized_DVM'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from carcolor.command import main

    sys.exit(main(__spec__.name))
