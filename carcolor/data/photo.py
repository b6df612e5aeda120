"""One photo of a drawn car (carcolor.data.car): lighting, camera placement, shadow, white background.

Every photo of an advert shows the same car with its own exposure, white balance, highlights,
camera distance, position, slight perspective and roll, and side of the car.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .car import Car, Layer


def _perspective_coeffs(dst: Sequence[tuple[float, float]], src: Sequence[tuple[float, float]]) -> tuple[float, ...]:
    """Coefficients for PIL's PERSPECTIVE transform mapping output points `dst` to input points `src`."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(dst, src)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    return tuple(float(c) for c in np.linalg.solve(a, b))


@functools.lru_cache(maxsize=1)
def _shadow_sprite() -> Image.Image:
    """A soft elliptical blob, resized per photo (read-only: callers resize, which copies)."""
    im = Image.new("L", (160, 40), 0)
    ImageDraw.Draw(im).ellipse([16, 12, 144, 28], fill=255)
    return im.filter(ImageFilter.GaussianBlur(5))


def _light(layer: Layer, car: Car, rng: np.random.Generator) -> Image.Image:
    """The car as an RGBA image under this photo's exposure, white balance and specular highlights
    (which wash the colour out)."""
    h, w = layer.paint.shape
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
    return car_img


def _camera(car_img: Image.Image, layer: Layer, size: int, rng: np.random.Generator):
    """The lit car as the camera sees it: scale, position, slight perspective and roll, which side of
    the car. Returns the transformed car (its bounding box only, clipped to the photo), where it goes,
    the scale, and the car's centre and ground line in the photo."""
    h, w = layer.paint.shape
    f = size * rng.uniform(0.8, 0.95) / layer.car_len
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
    bx0 = max(0, int(math.floor(min(x for x, _ in dst))))
    by0 = max(0, int(math.floor(min(y for _, y in dst))))
    bx1 = min(size, int(math.ceil(max(x for x, _ in dst))))
    by1 = min(size, int(math.ceil(max(y for _, y in dst))))
    coeffs = _perspective_coeffs([(x - bx0, y - by0) for x, y in dst], src)
    placed = car_img.transform((bx1 - bx0, by1 - by0), Image.Transform.PERSPECTIVE, coeffs,
                               resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255, 0))
    return placed, (bx0, by0), f, xc, y_ground


def photograph(layer: Layer, car: Car, size: int, rng: np.random.Generator) -> Image.Image:
    """One size x size RGB photo of the car: lit, placed by the camera, on a soft shadow on white."""
    car_img = _light(layer, car, rng)
    placed, corner, f, xc, y_ground = _camera(car_img, layer, size, rng)
    bg = Image.new("L", (size, size), 255)
    sw = int(layer.car_len * f * rng.uniform(1.05, 1.2))
    sh = max(4, int(sw * rng.uniform(0.14, 0.2)))
    strength = rng.uniform(0.3, 0.55)
    sprite = _shadow_sprite().resize((sw, sh), Image.Resampling.BILINEAR)
    # pasting grey level g through the blob mask m gives 255 - (255 - g) * m
    bg.paste(int(round(255 * (1 - strength))), (int(xc - sw / 2), int(y_ground - sh * 0.55)), sprite)
    photo = Image.merge("RGBA", (bg, bg, bg, Image.new("L", (size, size), 255)))
    photo.alpha_composite(placed, dest=corner)
    return photo.convert("RGB")
