"""Both AQI tables reproduce every published breakpoint; real-time rules follow the agencies."""

from __future__ import annotations

import itertools
import math

import pytest

from calibration.aqi import (
    SCALES,
    TW_MOENV_2025,
    US_EPA_2024,
    AqiError,
    AqiScale,
    compute_aqi,
    moenv_realtime_pm25,
    nowcast_pm25,
    realtime_aqi,
)

Row = tuple[float, float, int, int, str]

# (c_low, c_high, aqi_low, aqi_high, category key) as published (see calibration.aqi docstring)
US_TABLE = [
    (0.0, 9.0, 0, 50, "good"),
    (9.1, 35.4, 51, 100, "moderate"),
    (35.5, 55.4, 101, 150, "usg"),
    (55.5, 125.4, 151, 200, "unhealthy"),
    (125.5, 225.4, 201, 300, "very_unhealthy"),
    (225.5, 325.4, 301, 500, "hazardous"),
]
TW_TABLE = [
    (0.0, 12.4, 0, 50, "good"),
    (12.5, 30.4, 51, 100, "moderate"),
    (30.5, 50.4, 101, 150, "usg"),
    (50.5, 125.4, 151, 200, "unhealthy"),
    (125.5, 225.4, 201, 300, "very_unhealthy"),
    (225.5, 325.4, 301, 400, "hazardous"),
    (325.5, 500.4, 401, 500, "hazardous"),
]


@pytest.mark.parametrize(("scale", "table"), [(US_EPA_2024, US_TABLE), (TW_MOENV_2025, TW_TABLE)])
def test_every_breakpoint_gives_its_published_index(scale: AqiScale, table: list[Row]) -> None:
    for c_low, c_high, i_low, i_high, key in table:
        low = compute_aqi(scale.key, c_low)
        high = compute_aqi(scale.key, c_high)
        assert (low.aqi, high.aqi) == (i_low, i_high), (c_low, c_high)
        assert low.category.key == key and high.category.key == key
        assert not low.beyond_index and not high.beyond_index


@pytest.mark.parametrize(("scale", "table"), [(US_EPA_2024, US_TABLE), (TW_MOENV_2025, TW_TABLE)])
def test_tables_are_served_as_published(scale: AqiScale, table: list[Row]) -> None:
    rows = [(b["c_low"], b["c_high"], b["aqi_low"], b["aqi_high"]) for b in scale.as_dict()["breakpoints"]]
    assert rows == [row[:4] for row in table]


def test_interpolation_matches_the_epa_formula_across_the_range() -> None:
    for tenth in range(0, 3255):
        c = tenth / 10
        for c_low, c_high, i_low, i_high, _ in US_TABLE:
            if c_low <= c <= c_high:
                expected = (i_high - i_low) / (c_high - c_low) * (c - c_low) + i_low
                assert compute_aqi("us_epa_2024", c).aqi == math.floor(expected + 0.5 + 1e-9), c


def test_epa_truncates_and_moenv_rounds() -> None:
    assert compute_aqi("us_epa_2024", 9.09).concentration_used == 9.0
    assert compute_aqi("us_epa_2024", 9.09).aqi == 50
    assert compute_aqi("tw_moenv_2025", 12.45).concentration_used == 12.5
    assert compute_aqi("tw_moenv_2025", 12.45).aqi == 51
    assert compute_aqi("tw_moenv_2025", 12.44).aqi == 50
    assert compute_aqi("us_epa_2024", 35.45).aqi == 100


def test_known_values() -> None:
    assert compute_aqi("us_epa_2024", 12.0).aqi == 56  # (49/26.3)*2.9 + 51 = 56.4
    assert compute_aqi("us_epa_2024", 100.0).aqi == 182  # (49/69.9)*44.5 + 151 = 182.2
    assert compute_aqi("tw_moenv_2025", 20.0).aqi == 72  # (49/17.9)*7.5 + 51 = 71.5 -> 72 (half up)


def test_beyond_the_index_is_marked() -> None:
    result = compute_aqi("us_epa_2024", 400.0)
    assert result.beyond_index and result.aqi > 500 and result.category.key == "hazardous"
    assert compute_aqi("tw_moenv_2025", 500.4).aqi == 500


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_concentrations_are_refused(bad: float) -> None:
    with pytest.raises(AqiError):
        compute_aqi("us_epa_2024", bad)


def test_unknown_scale() -> None:
    with pytest.raises(AqiError, match="known"):
        compute_aqi("eu_caqi", 10.0)


def test_nowcast_steady_and_weighted() -> None:
    assert nowcast_pm25([10.0] * 12) == pytest.approx(10.0)
    # Rising from 10 to 40: w = 10/40 = 0.25 -> floored at 0.5.
    hours = [40.0, 30.0, 20.0, 10.0]
    weights = [0.5**i for i in range(4)]
    expected = sum(w * c for w, c in zip(weights, hours, strict=True)) / sum(weights)
    assert nowcast_pm25(hours) == pytest.approx(expected)
    # Stable-ish data keep w = min/max.
    hours = [20.0, 18.0, 16.0, 17.0]
    w = 16.0 / 20.0
    expected = sum(w**i * c for i, c in enumerate(hours)) / sum(w**i for i in range(4))
    assert nowcast_pm25(hours) == pytest.approx(expected)


def test_nowcast_needs_two_of_the_three_latest_hours() -> None:
    assert nowcast_pm25([None, None, 10.0, 10.0, 10.0]) is None
    assert nowcast_pm25([10.0, None, 10.0]) == pytest.approx(10.0)
    # A missing hour keeps its place in the exponent.
    value = nowcast_pm25([20.0, None, 10.0])
    w = 0.5
    assert value == pytest.approx((20.0 + w**2 * 10.0) / (1 + w**2))


def test_moenv_realtime_rule_and_validity() -> None:
    hours = [30.0, 28.0, 26.0, 24.0] + [10.0] * 8
    expected = 0.5 * (sum(hours) / 12) + 0.5 * (sum(hours[:4]) / 4)
    assert moenv_realtime_pm25(hours) == pytest.approx(round(expected, 1))
    only_one_recent = [30.0, None, None, None] + [10.0] * 8
    assert moenv_realtime_pm25(only_one_recent) is None
    five_of_twelve = [30.0, 30.0, None, None, 10.0, 10.0, 10.0] + [None] * 5
    assert moenv_realtime_pm25(five_of_twelve) is None
    six_of_twelve = [30.0, 30.0, None, None, 10.0, 10.0, 10.0, 10.0] + [None] * 4
    assert moenv_realtime_pm25(six_of_twelve) == pytest.approx(round(0.5 * 100 / 6 + 0.5 * 30, 1))


def test_realtime_aqi_uses_each_agency_rule() -> None:
    hours = [15.0] * 12
    us = realtime_aqi("us_epa_2024", hours)
    tw = realtime_aqi("tw_moenv_2025", hours)
    assert us is not None and tw is not None
    assert us.aqi == compute_aqi("us_epa_2024", 15.0).aqi
    assert tw.aqi == compute_aqi("tw_moenv_2025", 15.0).aqi
    assert realtime_aqi("tw_moenv_2025", [None] * 12) is None


def test_categories_cover_0_to_500_without_gaps() -> None:
    for scale in SCALES.values():
        cats = scale.categories
        assert cats[0].aqi_low == 0 and cats[-1].aqi_high == 500
        for left, right in itertools.pairwise(cats):
            assert right.aqi_low == left.aqi_high + 1
            assert right.color.startswith("#") and len(right.color) == 7
