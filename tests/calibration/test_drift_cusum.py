"""The CUSUM drift detector on seeded fleets: how fast it flags a drift or a step, and how often it cries wolf.

The fleet (`devtools.colocation.calibrated_fleet`): 8 boxes within 1.5 km seeing one
city-wide field (common-mode pollution), each through its own slow local factor (AR(1), 2 %
hourly, correlation 0.7 per hour), minute sensor noise averaged to hours, calibrations off by
±3 %, 3 % of hours missing. `python -m devtools.drift_study` gives the figures
docs/calibration.md quotes, over more seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from calibration.drift import DriftConfig, Site, detect_drift
from calibration.series import ONE_HOUR, HourlySeries
from devtools.colocation import Fault, calibrated_fleet, hour_after

SEEDS = range(10)
ONSET_DAY = 40.0


def fleet(seed: int, faults: tuple[Fault, ...] = ()) -> tuple[np.datetime64, list[Site]]:
    return calibrated_fleet(seed, faults)


def delay_hours(start: np.datetime64, sites: list[Site], device: str) -> float:
    finding = {f.device_id: f for f in detect_drift(sites)}[device]
    assert finding.status == "drift", finding
    assert finding.flagged_at is not None
    return float((finding.flagged_at - hour_after(start, ONSET_DAY)) / ONE_HOUR)


@pytest.mark.slow
def test_healthy_fleets_raise_no_flag_in_sixty_days() -> None:
    statuses = [f.status for seed in SEEDS for f in detect_drift(fleet(seed)[1])]
    print(f"\nfalse alarms: {statuses.count('drift')} of {len(statuses)} box-60-day runs")
    assert statuses == ["ok"] * len(statuses)


@pytest.mark.slow
def test_ten_percent_a_day_gain_drift_is_flagged_within_about_two_days() -> None:
    delays = []
    for seed in SEEDS:
        start, sites = fleet(seed, (Fault("colo-3", "drift", ONSET_DAY, 0.10),))
        delays.append(delay_hours(start, sites, "colo-3") / 24)
        others = [f.status for f in detect_drift(sites) if f.device_id != "colo-3"]
        assert others == ["ok"] * 7
    median, worst = np.median(delays), max(delays)
    print(f"\ndrift 10 %/day flagged after {median:.2f} days (median), max {worst:.2f}: {np.round(delays, 2)}")
    assert all(d > 0 for d in delays)
    assert float(np.median(delays)) <= 2.0
    assert max(delays) <= 3.0


@pytest.mark.slow
def test_sudden_thirty_percent_step_is_flagged_within_hours() -> None:
    delays = []
    for seed in SEEDS:
        size = -0.30 if seed % 2 else 0.30
        start, sites = fleet(seed, (Fault("colo-5", "step", ONSET_DAY, size),))
        delays.append(delay_hours(start, sites, "colo-5"))
    print(f"\n30 % step flagged after {np.median(delays):.0f} h (median), max {max(delays):.0f} h: {delays}")
    assert all(d >= 0 for d in delays)
    assert float(np.median(delays)) <= 12


def test_a_box_cut_off_from_comparators_is_insufficient_data_not_ok() -> None:
    _, sites = fleet(1)
    far = Site("far-away", 22.6, 120.3, sites[0].series)
    first = sites[0].series
    short = Site("new-box", sites[0].lat, sites[0].lon, HourlySeries(first.times[:30], first.pm25[:30]))
    findings = {f.device_id: f for f in detect_drift([*sites, far, short])}
    assert findings["far-away"].status == "insufficient_data"
    assert findings["new-box"].status == "insufficient_data"
    assert findings["colo-1"].status == "ok"


def test_a_box_already_off_when_the_look_back_starts_is_flagged_by_its_level() -> None:
    _, sites = fleet(2)
    off = sites[3]
    sites[3] = Site(off.site_id, off.lat, off.lon, HourlySeries(off.series.times, off.series.pm25 * 1.6))
    finding = {f.device_id: f for f in detect_drift(sites)}["colo-4"]
    assert finding.status == "drift" and finding.direction == "up"
    assert finding.baseline_ratio > 1.3


def test_a_setting_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        detect_drift(fleet(3)[1], DriftConfig(threshold=0))
