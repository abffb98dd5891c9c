"""Hysteresis of the school band and the flag colours (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.school_air import FLAG_COLOURS, band_of, next_band, school_flag, school_hourly
from calibration.aqi import TW_MOENV_2025, US_EPA_2024, compute_aqi


def test_band_goes_up_at_once_and_down_only_past_the_hysteresis() -> None:
    scale = TW_MOENV_2025
    band = next_band(scale, None, 100, 5)
    assert band == 1
    band = next_band(scale, band, 101, 5)
    assert band == 2  # entered USG
    for aqi in (100, 99, 101, 97, 100, 96):  # dancing on the 100/101 boundary
        band = next_band(scale, band, aqi, 5)
        assert band == 2
    assert next_band(scale, band, 95, 5) == 1
    assert next_band(scale, 4, 40, 5) == 0


def test_flag_colours_follow_the_categories_of_both_scales() -> None:
    assert FLAG_COLOURS == ("green", "yellow", "orange", "red", "purple", "maroon")
    for scale in (TW_MOENV_2025, US_EPA_2024):
        assert len(scale.categories) == len(FLAG_COLOURS)
        result = compute_aqi(scale, 60.0)
        flag = school_flag("S", scale, band_of(scale, result.aqi), result)
        assert flag.colour == "red" and flag.rgb == "#ff0000" and flag.category == "unhealthy"


def test_school_hour_is_the_median_of_its_boxes() -> None:
    h0 = int(datetime(2026, 1, 1, 8, tzinfo=UTC).timestamp())
    h1 = h0 - 3600
    boxes = [{h0: 10.0, h1: 10.0}, {h0: 12.0}, {h0: 500.0, h1: 14.0}]
    assert school_hourly(boxes, [h0, h1, h1 - 3600]) == [12.0, 12.0, None]
