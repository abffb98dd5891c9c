"""PM2.5 air-quality indices: the US EPA 2024 AQI and the Taiwan MOENV AQI in force from 2025.

Breakpoints, categories and colours are data (`SCALES`), so the API serves exactly the
table the computation uses. Arithmetic is done in exact fractions: the published
tables are decimal, and binary floats would put 35.4 a hair below itself and move an
hour into the wrong category.

Sources
-------
US EPA: "Technical Assistance Document for the Reporting of Daily Air Quality - the Air
Quality Index (AQI)", EPA-454/B-24-002 (May 2024), PM2.5 breakpoints revised with the
PM NAAQS of 7 February 2024 (EPA "PM NAAQS Air Quality Index fact sheet", 2024-02):
0.0-9.0 / 9.1-35.4 / 35.5-55.4 / 55.5-125.4 / 125.5-225.4 / 225.5-325.4 µg/m³ for
AQI 0-50 / 51-100 / 101-150 / 151-200 / 201-300 / 301-500. Concentrations are truncated
to one decimal; the index is rounded to the nearest integer. The NowCast (AirNow) gives
the real-time concentration.

Taiwan MOENV: air-quality index table of the Ministry of Environment, applied from
2025-01-01 (airtw.moenv.gov.tw, "AQI" page; new PM2.5 thresholds announced 2024-11-28):
0.0-12.4 / 12.5-30.4 / 30.5-50.4 / 50.5-125.4 / 125.5-225.4 / 225.5-325.4 / 325.5-500.4
µg/m³ for AQI 0-50 / 51-100 / 101-150 / 151-200 / 201-300 / 301-400 / 401-500. The PM2.5
moving average keeps one decimal, the second being rounded. The real-time PM2.5 value is
0.5 x (average of the last 12 hours) + 0.5 x (average of the last 4 hours), valid only
with at least 6 valid hours in the 12 and 2 in the 4 (MOENV real-time AQI rule, as
restated e.g. by the Taichung EPB AQI table page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Literal

Rounding = Literal["truncate", "round_half_up"]


@dataclass(frozen=True)
class Category:
    """A health category: AQI range, names and display colour (hex RGB)."""

    key: str
    name: str
    name_local: str
    aqi_low: int
    aqi_high: int
    color: str


@dataclass(frozen=True)
class Breakpoint:
    """One row of a breakpoint table; concentrations are decimal strings as published."""

    c_low: str
    c_high: str
    aqi_low: int
    aqi_high: int


@dataclass(frozen=True)
class AqiScale:
    """A PM2.5 index: breakpoints, categories and how concentrations are rounded first."""

    key: str
    name: str
    pollutant: str
    unit: str
    averaging: str
    realtime: str
    rounding: Rounding
    decimals: int
    breakpoints: tuple[Breakpoint, ...]
    categories: tuple[Category, ...]
    source: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready table (breakpoints as numbers) for the API."""
        data = asdict(self)
        data["breakpoints"] = [
            {"c_low": float(b.c_low), "c_high": float(b.c_high), "aqi_low": b.aqi_low, "aqi_high": b.aqi_high}
            for b in self.breakpoints
        ]
        return data


@dataclass(frozen=True)
class AqiResult:
    """An index value: the concentration actually used (after rounding) and its category."""

    scale: str
    concentration: float
    concentration_used: float
    aqi: int
    category: Category
    beyond_index: bool


# Colours: the AQI palette of the EPA TAD 2024 (green, yellow, orange, red, purple, maroon);
# MOENV uses the same six colour names for its categories.
_GREEN, _YELLOW, _ORANGE, _RED, _PURPLE, _MAROON = "#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#8F3F97", "#7E0023"

US_EPA_2024 = AqiScale(
    key="us_epa_2024",
    name="US EPA AQI (PM2.5, 2024 breakpoints)",
    pollutant="pm25",
    unit="µg/m³",
    averaging="24-hour average",
    realtime="NowCast (12 hours, weight factor min/max floored at 0.5)",
    rounding="truncate",
    decimals=1,
    breakpoints=(
        Breakpoint("0.0", "9.0", 0, 50),
        Breakpoint("9.1", "35.4", 51, 100),
        Breakpoint("35.5", "55.4", 101, 150),
        Breakpoint("55.5", "125.4", 151, 200),
        Breakpoint("125.5", "225.4", 201, 300),
        Breakpoint("225.5", "325.4", 301, 500),
    ),
    categories=(
        Category("good", "Good", "Good", 0, 50, _GREEN),
        Category("moderate", "Moderate", "Moderate", 51, 100, _YELLOW),
        Category("usg", "Unhealthy for Sensitive Groups", "Unhealthy for Sensitive Groups", 101, 150, _ORANGE),
        Category("unhealthy", "Unhealthy", "Unhealthy", 151, 200, _RED),
        Category("very_unhealthy", "Very Unhealthy", "Very Unhealthy", 201, 300, _PURPLE),
        Category("hazardous", "Hazardous", "Hazardous", 301, 500, _MAROON),
    ),
    source="US EPA, Technical Assistance Document for the Reporting of Daily Air Quality, EPA-454/B-24-002, May 2024",
)

TW_MOENV_2025 = AqiScale(
    key="tw_moenv_2025",
    name="Taiwan MOENV AQI (PM2.5, from 2025-01-01)",
    pollutant="pm25",
    unit="µg/m³",
    averaging="24-hour average (daily AQI); real-time moving average for the hourly AQI",
    realtime="0.5 x mean(last 12 h) + 0.5 x mean(last 4 h); needs >= 6 valid of 12 and >= 2 valid of 4",
    rounding="round_half_up",
    decimals=1,
    breakpoints=(
        Breakpoint("0.0", "12.4", 0, 50),
        Breakpoint("12.5", "30.4", 51, 100),
        Breakpoint("30.5", "50.4", 101, 150),
        Breakpoint("50.5", "125.4", 151, 200),
        Breakpoint("125.5", "225.4", 201, 300),
        Breakpoint("225.5", "325.4", 301, 400),
        Breakpoint("325.5", "500.4", 401, 500),
    ),
    categories=(
        Category("good", "Good", "良好", 0, 50, _GREEN),
        Category("moderate", "Moderate", "普通", 51, 100, _YELLOW),
        Category("usg", "Unhealthy for Sensitive Groups", "對敏感族群不健康", 101, 150, _ORANGE),
        Category("unhealthy", "Unhealthy for All Groups", "對所有族群不健康", 151, 200, _RED),
        Category("very_unhealthy", "Very Unhealthy", "非常不健康", 201, 300, _PURPLE),
        Category("hazardous", "Hazardous", "危害", 301, 500, _MAROON),
    ),
    source="Taiwan Ministry of Environment (MOENV), air quality index table in force from 2025-01-01",
)

SCALES: dict[str, AqiScale] = {scale.key: scale for scale in (US_EPA_2024, TW_MOENV_2025)}


REALTIME_HOURS = 12
"""Hourly averages a real-time index looks at, most recent first: NowCast and MOENV both use 12."""


class AqiError(ValueError):
    """The concentration or scale cannot give an index (negative, NaN, unknown scale)."""


def get_scale(key: str) -> AqiScale:
    """A scale by key, or AqiError listing the known ones."""
    try:
        return SCALES[key]
    except KeyError:
        raise AqiError(f"unknown AQI scale {key!r}; known: {sorted(SCALES)}") from None


def round_concentration(scale: AqiScale, concentration: float) -> Decimal:
    """The concentration as the scale's rules use it (EPA truncates, MOENV rounds half up)."""
    mode = ROUND_DOWN if scale.rounding == "truncate" else ROUND_HALF_UP
    return Decimal(repr(float(concentration))).quantize(Decimal(1).scaleb(-scale.decimals), rounding=mode)


def _category(scale: AqiScale, aqi: int) -> Category:
    for category in scale.categories:
        if aqi <= category.aqi_high:
            return category
    return scale.categories[-1]


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def compute_aqi(scale: AqiScale | str, concentration: float) -> AqiResult:
    """The index for one concentration already averaged as the scale requires.

    Above the top breakpoint the top segment is extrapolated and `beyond_index` is set;
    agencies publish such hours as "beyond the AQI" / above 500 rather than a number.
    """
    table = get_scale(scale) if isinstance(scale, str) else scale
    if concentration is None or not math.isfinite(concentration):
        raise AqiError(f"concentration must be a finite number, got {concentration!r}")
    if concentration < 0:
        raise AqiError(f"concentration must not be negative, got {concentration}")
    used = round_concentration(table, concentration)
    c = Fraction(used)
    chosen = table.breakpoints[-1]
    for row in table.breakpoints:
        if c <= Fraction(Decimal(row.c_high)):
            chosen = row
            break
    c_low, c_high = Fraction(Decimal(chosen.c_low)), Fraction(Decimal(chosen.c_high))
    index = Fraction(chosen.aqi_high - chosen.aqi_low) / (c_high - c_low) * (c - c_low) + chosen.aqi_low
    aqi = _round_half_up(index)
    beyond = c > Fraction(Decimal(table.breakpoints[-1].c_high))
    return AqiResult(
        scale=table.key,
        concentration=float(concentration),
        concentration_used=float(used),
        aqi=aqi,
        category=_category(table, aqi),
        beyond_index=beyond,
    )


def _valid(values: Sequence[float | None]) -> list[tuple[int, float]]:
    return [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v) and v >= 0]


def nowcast_pm25(hourly_recent_first: Sequence[float | None]) -> float | None:
    """US EPA NowCast for PM2.5 from up to 12 hourly averages, most recent first.

    Needs at least two of the three most recent hours; weight factor w = min/max of the
    valid hours, floored at 0.5; NowCast = sum(w^i c_i) / sum(w^i) over valid hours, i the
    hours ago (0 = latest). None when the data are insufficient.
    """
    window = list(hourly_recent_first[:REALTIME_HOURS])
    valid = _valid(window)
    if sum(1 for i, _ in valid if i < 3) < 2:
        return None
    values = [v for _, v in valid]
    high, low = max(values), min(values)
    if high == 0:
        return 0.0
    weight = max(low / high, 0.5)
    numerator = sum(weight**i * v for i, v in valid)
    denominator = sum(weight**i for i, _ in valid)
    return numerator / denominator


def moenv_realtime_pm25(hourly_recent_first: Sequence[float | None]) -> float | None:
    """MOENV real-time PM2.5: 0.5 x 12-hour mean + 0.5 x 4-hour mean, rounded to 0.1.

    Valid only with >= 6 valid values in the last 12 hours and >= 2 in the last 4;
    None otherwise (MOENV then publishes no PM2.5 sub-index for the hour).
    """
    last12 = [v for _, v in _valid(list(hourly_recent_first[:REALTIME_HOURS]))]
    last4 = [v for _, v in _valid(list(hourly_recent_first[:4]))]
    if len(last12) < 6 or len(last4) < 2:
        return None
    value = 0.5 * (sum(last12) / len(last12)) + 0.5 * (sum(last4) / len(last4))
    return float(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def realtime_aqi(scale: AqiScale | str, hourly_recent_first: Sequence[float | None]) -> AqiResult | None:
    """The real-time index: NowCast for the EPA scale, the 12 h/4 h moving average for MOENV."""
    table = get_scale(scale) if isinstance(scale, str) else scale
    value = nowcast_pm25(hourly_recent_first) if table is US_EPA_2024 else moenv_realtime_pm25(hourly_recent_first)
    return None if value is None else compute_aqi(table, value)
