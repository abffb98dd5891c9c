"""A school's real-time AQI, its band with hysteresis, and the colour of its air-quality flag.

- The school's hourly PM2.5 is the median, hour by hour, of its boxes' hourly means (one noisy
  box does not move a school), the current hour's mean so far counting as the latest hour, so a
  school is judged within one cycle of the reading that moves it.
- The real-time AQI is calibration.aqi.realtime_aqi: Taiwan MOENV's 0.5 x 12 h + 0.5 x 4 h mean
  by default, the EPA NowCast for the US scale (a school's `school_air.scale`).
- Hysteresis: the band goes up as soon as the AQI enters a higher category, and comes down only
  when the AQI is `hysteresis_aqi` points below the lower bound of the band it stands in, so a
  value dancing on a boundary moves the band once, not at every reading.
- The flag is the colour of the band, as the campus air-quality flag programmes raise it
  (Taiwan MOENV 校園空品旗, after the US EPA School Flag Program): green, yellow, orange, red,
  purple, maroon for the six categories of calibration.aqi (docs/schools.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from calibration.aqi import AqiResult, AqiScale

FLAG_COLOURS = ("green", "yellow", "orange", "red", "purple", "maroon")
"""Flag colour names by band (category index): the six AQI colours of EPA and MOENV."""


def school_hourly(per_box: Sequence[dict[int, float]], hours_recent_first: Sequence[int]) -> list[float | None]:
    """The school's hourly PM2.5 (hours as Unix seconds), most recent first: the median of its boxes'
    means each hour (None: no box)."""
    out: list[float | None] = []
    for hour in hours_recent_first:
        present = [box[hour] for box in per_box if hour in box]
        out.append(statistics.median(present) if present else None)
    return out


def band_of(scale: AqiScale, aqi: int) -> int:
    """The category index of an AQI value (0 = good)."""
    for index, category in enumerate(scale.categories):
        if aqi <= category.aqi_high:
            return index
    return len(scale.categories) - 1


def next_band(scale: AqiScale, previous: int | None, aqi: int, hysteresis_aqi: int) -> int:
    """The band after this AQI: up at once, down only below the band's lower bound minus the hysteresis."""
    raw = band_of(scale, aqi)
    if previous is None or raw >= previous:
        return raw
    if aqi > scale.categories[previous].aqi_low - hysteresis_aqi:
        return previous
    return band_of(scale, aqi + hysteresis_aqi)


@dataclass(frozen=True)
class SchoolFlag:
    """What the school's flag shows: the payload of its retained topic, less `at`."""

    school: str
    band: int
    colour: str
    rgb: str
    aqi: int | None
    scale: str
    category: str


def school_flag(school: str, scale: AqiScale, band: int, result: AqiResult | None) -> SchoolFlag:
    """The flag of a school standing in `band` (the category shown is the band's, not the raw AQI's)."""
    category = scale.categories[band]
    return SchoolFlag(
        school,
        band,
        FLAG_COLOURS[band],
        category.color.lower(),
        None if result is None else result.aqi,
        scale.key,
        category.key,
    )
