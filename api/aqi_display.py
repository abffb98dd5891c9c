"""How an AQI category is shown: the text colour readable on its colour (WCAG 2.1 AA).

The pages never choose colours themselves: the server sends each marker's background (the
scale's category colour) and the text colour from here, so the number on a yellow marker is
black and on a maroon one white, each at a contrast of at least 4.5:1.
"""

from __future__ import annotations

from typing import Any

from calibration.aqi import AqiResult

BLACK, WHITE = "#000000", "#FFFFFF"
AA_NORMAL_TEXT = 4.5
"""WCAG 2.1 success criterion 1.4.3: the least contrast for normal-size text."""


def relative_luminance(hex_rgb: str) -> float:
    """WCAG 2.1 relative luminance of a #RRGGBB colour (sRGB channels linearised)."""
    channels = [int(hex_rgb[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG contrast ratio of two #RRGGBB colours, from 1 to 21."""
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def text_color_on(background: str) -> str:
    """Black or white, whichever contrasts more with `background`."""
    return BLACK if contrast_ratio(background, BLACK) >= contrast_ratio(background, WHITE) else WHITE


def aqi_display(result: AqiResult | None) -> dict[str, Any] | None:
    """The JSON a page shows for an index: number, category key and names, colours; None without an index."""
    if result is None:
        return None
    category = result.category
    return {
        "aqi": result.aqi, "scale": result.scale, "concentration_used": result.concentration_used,
        "beyond_index": result.beyond_index, "category": category.key, "name": category.name,
        "name_local": category.name_local, "color": category.color, "text_color": text_color_on(category.color),
    }
