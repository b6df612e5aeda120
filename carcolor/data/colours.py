"""The colour vocabulary: which DVM-Car colours are never classes, and the synthetic generator's paints.

Plain data, no imports: the config checks read it on every snakemake run.
"""

# Colours that are never classes: the seller gave none (Unlisted), or the car has several (Multicolour).
NON_COLOURS = ("Unlisted", "Multicolour")

# Base paint colour per supported DVM-Car colour name (Title case, British spelling).
# The order is the canonical colour order used to derive per-advert seeds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "Black": (24, 25, 28),
    "Grey": (122, 125, 129),
    "White": (234, 234, 231),
    "Blue": (44, 82, 166),
    "Silver": (162, 165, 169),
    "Red": (172, 26, 32),
    "Brown": (136, 88, 54),
    "Green": (56, 136, 78),
    "Yellow": (228, 190, 40),
    "Beige": (172, 142, 100),
    "Orange": (192, 104, 46),
}

# Colours that are meant to be confusable; most classification errors should fall inside these.
LOOKALIKE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Silver", "Grey", "White"),
    ("Brown", "Beige", "Orange"),
)

# Per-colour paint variation: (lightness log-sd, saturation log-sd, hue sd in turns, metallic probability).
# Lightness acts on the distance from black for dark paints and from white for light ones.
PAINT_JITTER: dict[str, tuple[float, float, float, float]] = {
    "Black": (0.30, 0.20, 0.000, 0.5),
    "Grey": (0.16, 0.25, 0.000, 0.7),
    "White": (0.40, 0.30, 0.000, 0.3),
    "Blue": (0.10, 0.12, 0.012, 0.6),
    "Silver": (0.20, 0.25, 0.000, 0.9),
    "Red": (0.06, 0.10, 0.006, 0.3),
    "Brown": (0.14, 0.18, 0.010, 0.6),
    "Green": (0.08, 0.12, 0.020, 0.5),
    "Yellow": (0.08, 0.10, 0.004, 0.2),
    "Beige": (0.10, 0.10, 0.010, 0.5),
    "Orange": (0.10, 0.10, 0.006, 0.4),
}
