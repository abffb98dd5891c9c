"""A drift injected into one simulated device is flagged within three days; others stay quiet (iid noise)."""

from __future__ import annotations

import numpy as np

from calibration.drift import DriftConfig, Site, detect_drift, distance_km
from calibration.series import HourlySeries

DAYS = 20
DRIFT_START_HOUR = 10 * 24
DRIFT_PER_DAY = 0.15  # gain grows 15 % per day: dust building up on the optics


def fleet(seed: int, drifting: str | None) -> list[Site]:
    """Eight boxes within ~2 km sharing one air mass, plus a reference next to box-7."""
    rng = np.random.default_rng(seed)
    hours = DAYS * 24
    t = np.arange(hours)
    field = 18 + 10 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 0.8, hours)).clip(-10, 10)
    field = np.clip(field, 2, None)
    times = np.datetime64("2025-04-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    sites = []
    for k in range(8):
        gain = 1 + rng.normal(0, 0.04)
        values = field * gain + rng.normal(0, 1.5, hours)
        name = f"box-{k}"
        if name == drifting:
            days_since = np.clip((t - DRIFT_START_HOUR) / 24, 0, None)
            values = values * (1 + DRIFT_PER_DAY * days_since)
        values[rng.choice(hours, size=hours // 30, replace=False)] = np.nan  # dropped messages
        lat, lon = 25.01 + 0.004 * (k % 4), 121.46 + 0.005 * (k // 4)
        sites.append(Site(name, lat, lon, HourlySeries(times=times, pm25=values)))
    ref = field + rng.normal(0, 1.0, hours)
    sites.append(Site("moenv-banqiao", sites[7].lat + 0.0003, sites[7].lon, HourlySeries(times=times, pm25=ref), True))
    return sites


def test_injected_drift_is_flagged_within_three_days() -> None:
    findings = {f.device_id: f for f in detect_drift(fleet(11, drifting="box-2"), DriftConfig())}
    drifting = findings["box-2"]
    assert drifting.status == "drift" and drifting.flagged_at is not None
    start = np.datetime64("2025-04-01T00:00:00", "s") + DRIFT_START_HOUR * np.timedelta64(3600, "s")
    delay_hours = float((drifting.flagged_at - start) / np.timedelta64(3600, "s"))
    days = delay_hours / 24
    print(f"\ndrift flagged {delay_hours:.0f} h ({days:.2f} days) after it began; vs {drifting.comparator}")
    assert 0 < delay_hours <= 72
    quiet = [f for name, f in findings.items() if name != "box-2"]
    assert all(f.status == "ok" for f in quiet), [(f.device_id, f.status, f.ratio) for f in quiet]


def test_colocated_reference_is_preferred_and_drift_against_it_is_found() -> None:
    findings = {f.device_id: f for f in detect_drift(fleet(12, drifting="box-7"), DriftConfig())}
    assert findings["box-7"].comparator == "reference:moenv-banqiao"
    assert findings["box-7"].status == "drift"
    assert findings["box-0"].comparator.startswith("neighbours:")


def test_no_drift_no_flags() -> None:
    findings = detect_drift(fleet(13, drifting=None), DriftConfig())
    assert [f.status for f in findings] == ["ok"] * 8


def test_isolated_device_cannot_be_checked() -> None:
    sites = fleet(14, drifting=None)
    lonely = sites[0]
    far = Site("far-away", 22.6, 120.3, lonely.series)
    findings = {f.device_id: f for f in detect_drift([*sites, far])}
    assert findings["far-away"].status == "insufficient_data"
    assert findings["far-away"].needs_attention


def test_distance() -> None:
    assert distance_km(25.0, 121.5, 25.0, 121.5) == 0.0
    assert 110 < distance_km(25.0, 121.5, 26.0, 121.5) < 112


def test_a_box_calibrated_high_is_not_drifting_against_a_reference_when_the_air_gets_dirtier() -> None:
    # 10 % high at every concentration: under the reference floor (10 µg/m³) a log ratio of 0.036 in
    # the clean baseline week and 0.08 in the polluted weeks after it; the gain-shaped level expects that
    # (a level of one number calls it a drift)
    rng = np.random.default_rng(21)
    hours = 21 * 24
    t = np.arange(hours)
    air = np.where(t < 7 * 24, 6.0, 60.0) + 2 * np.sin(2 * np.pi * t / 24)
    times = np.datetime64("2025-04-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    box = Site("box-0", 25.01, 121.46, HourlySeries(times, 1.10 * air + rng.normal(0, 0.3, hours)))
    station = Site("moenv-banqiao", 25.01, 121.46, HourlySeries(times, air + rng.normal(0, 0.5, hours)), True)
    finding = detect_drift([box, station])[0]
    assert finding.comparator == "reference:moenv-banqiao"
    assert finding.status == "ok", (finding.test, finding.statistic, finding.trend_statistic)
