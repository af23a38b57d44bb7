"""Colour conversions between what lights report (RGB, CIE xy, kelvin) and what HomeKit
shows (hue 0-360, saturation 0-100, colour temperature in mireds). Pure functions."""

from __future__ import annotations

import colorsys

#: Mireds are 1 000 000 / kelvin.
MIRED_KELVIN = 1_000_000


def rgb_to_hs(red: float, green: float, blue: float) -> tuple[float, float]:
    """RGB 0-255 -> (hue 0-360, saturation 0-100)."""
    hue, saturation, _ = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
    return round(hue * 360, 1), round(saturation * 100, 1)


def hs_to_rgb(hue: float, saturation: float) -> tuple[int, int, int]:
    """(hue 0-360, saturation 0-100) at full brightness -> RGB 0-255."""
    red, green, blue = colorsys.hsv_to_rgb(hue / 360, saturation / 100, 1.0)
    return round(red * 255), round(green * 255), round(blue * 255)


def _gamma(value: float) -> float:
    """sRGB companding, linear -> display."""
    value = max(value, 0.0)
    return 12.92 * value if value <= 0.0031308 else 1.055 * value ** (1 / 2.4) - 0.055


def _linear(value: float) -> float:
    """sRGB companding, display -> linear."""
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def xy_to_hs(x: float, y: float) -> tuple[float, float]:
    """CIE 1931 xy (at full brightness) -> (hue 0-360, saturation 0-100)."""
    if y <= 0:
        return 0.0, 0.0
    big_x, big_z = x / y, (1 - x - y) / y
    red = 3.2406 * big_x - 1.5372 - 0.4986 * big_z
    green = -0.9689 * big_x + 1.8758 + 0.0415 * big_z
    blue = 0.0557 * big_x - 0.2040 + 1.0570 * big_z
    red, green, blue = (_gamma(c) for c in (red, green, blue))
    top = max(red, green, blue, 1e-9)
    return rgb_to_hs(red / top * 255, green / top * 255, blue / top * 255)


def hs_to_xy(hue: float, saturation: float) -> tuple[float, float]:
    """(hue 0-360, saturation 0-100) -> CIE 1931 xy, rounded as lights report it."""
    red, green, blue = (_linear(c / 255) for c in hs_to_rgb(hue, saturation))
    big_x = 0.4124 * red + 0.3576 * green + 0.1805 * blue
    big_y = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    big_z = 0.0193 * red + 0.1192 * green + 0.9505 * blue
    total = big_x + big_y + big_z
    if total <= 0:
        return 0.0, 0.0
    return round(big_x / total, 4), round(big_y / total, 4)


def kelvin_to_mired(kelvin: float) -> float:
    return MIRED_KELVIN / kelvin if kelvin > 0 else 0.0
