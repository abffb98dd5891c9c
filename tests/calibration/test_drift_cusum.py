"""The drift detector on seeded fleets: how fast it flags a drift or a step, and how often it cries wolf.

The fleet (`devtools.colocation.calibrated_fleet`): 8 boxes within 1.5 km seeing one
city-wide field (common-mode pollution), each through its own slow local factor (AR(1), 2 %
hourly, correlation 0.7 per hour), minute sensor noise averaged to hours, calibrations off by
±3 %, 3 % of hours missing; against a reference, the boxes stand at the station. Faults start
on day 40 of 60. `python -m devtools.drift_study` gives the figures docs/calibration.md quotes
over 30 seeds; the fast tests here check a few seeds, including the study's worst one (seed 0:
the fault begins in 4.7 µg/m³ air, where a box's calibration offset is most of its reading and
a 30 % gain change moves it by 5-15 %), and the slow test the whole study.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from calibration.drift import TUNABLES, DriftConfig, Site, config_from, detect_drift
from calibration.series import HourlySeries
from devtools.colocation import Fault
from devtools.drift_study import (
    CLEAN_AIR_UGM3,
    DEMO_END,
    ONSET_DAY,
    air_after_onset,
    alone_at_station,
    delay_hours,
    demo_city,
    fleet,
    largest_statistics,
    step_signal,
    study,
)

ORDINARY_AIR_SEEDS = (1, 2, 3, 4, 5)  # the fault begins in 8-30 µg/m³ air
# (reference, alone) of the study's three setups: boxes against their neighbours, a box alone at a
# reference station, the boxes together at the station (each against it and its neighbours)
SETUPS = {"neighbours": (False, False), "reference": (True, True), "station": (True, False)}
CLEAN_AIR_SEED = 0
DEFAULTS = DriftConfig()


def drift_fault() -> Fault:
    return Fault("colo-3", "drift", ONSET_DAY, 0.10)


def step_fault(seed: int) -> Fault:
    return Fault("colo-5", "step", ONSET_DAY, -0.3 if seed % 2 else 0.3)


@pytest.mark.parametrize("reference", [False, True], ids=["neighbours", "reference"])
def test_healthy_fleets_stay_well_below_every_threshold(reference: bool) -> None:
    cusum = DEFAULTS.reference_threshold if reference else DEFAULTS.threshold
    thresholds = (cusum, DEFAULTS.step_threshold, DEFAULTS.trend_threshold)
    for seed in range(4):
        findings = detect_drift(fleet(seed, (), reference)[1])
        assert [f.status for f in findings] == ["ok"] * 8, [(f.device_id, f.test) for f in findings]
        largest = largest_statistics(findings)
        assert all(value < 0.8 * limit for value, limit in zip(largest, thresholds, strict=True)), largest


@pytest.mark.parametrize("setup", SETUPS)
def test_ten_percent_a_day_gain_drift_is_flagged_within_two_days_in_ordinary_air(setup: str) -> None:
    # a box alone at the reference (1 µg/m³ of noise an hour) needs 55 h in seed 4: 2.5 days is its
    # bound; at the station with its neighbours 16-37 h
    reference, alone = SETUPS[setup]
    delays = [delay_hours(DEFAULTS, seed, drift_fault(), reference, alone) for seed in ORDINARY_AIR_SEEDS]
    print(f"\n10 %/day drift flagged after {delays} h")
    assert all(0 < d <= (60 if alone else 48) for d in delays)
    assert sum(d <= 48 for d in delays) >= (4 if alone else 5)


@pytest.mark.parametrize("setup", SETUPS)
def test_thirty_percent_step_is_flagged_within_twelve_hours_in_ordinary_air(setup: str) -> None:
    # against neighbours 1-5 h (the study's ordinary-air maximum is 5 h); a box alone against the
    # reference's 1 µg/m³ of hourly noise 2-9 h; at the station with its neighbours 1 h
    reference, alone = SETUPS[setup]
    delays = [delay_hours(DEFAULTS, seed, step_fault(seed), reference, alone) for seed in ORDINARY_AIR_SEEDS]
    print(f"\n30 % step flagged after {delays} h")
    assert all(0 <= d <= (12 if alone else 6) for d in delays)


def test_the_seeds_called_ordinary_air_are_ordinary_and_the_clean_one_clean() -> None:
    def air(seed: int) -> float:
        start, sites = fleet(seed, (), False)
        return air_after_onset(sites, start)

    assert all(air(seed) >= CLEAN_AIR_UGM3 for seed in ORDINARY_AIR_SEEDS)
    assert air(CLEAN_AIR_SEED) < CLEAN_AIR_UGM3


def test_a_fault_beginning_in_clean_air_is_found_later_but_found() -> None:
    # the study's worst seed (docs/calibration.md): against neighbours drift 68 h, step 56 h; a box
    # alone against the reference 90 h and 92 h (a 30 % gain step moves the box's log ratio by 0.034,
    # under the step test's smallest change, 0.1, and under one of its hours' noise); at the station
    # with its neighbours 62 h and 47 h
    bounds = {"neighbours": (72, 60), "reference": (96, 96), "station": (72, 60)}
    for setup, (drift_bound, step_bound) in bounds.items():
        reference, alone = SETUPS[setup]
        drift = delay_hours(DEFAULTS, CLEAN_AIR_SEED, drift_fault(), reference, alone)
        step = delay_hours(DEFAULTS, CLEAN_AIR_SEED, step_fault(CLEAN_AIR_SEED), reference, alone)
        assert 0 < drift <= drift_bound and 0 <= step <= step_bound, (setup, drift, step)


def test_a_step_in_clean_air_moves_the_log_ratio_by_less_than_the_step_tests_smallest_change() -> None:
    # why seed 0 is slow (docs/calibration.md): without noise its 30 % step moves the log ratio by
    # 0.065 against neighbours (0.034 against the reference); in ordinary air by 0.158 and more
    clean = step_signal(DEFAULTS, CLEAN_AIR_SEED, step_fault(CLEAN_AIR_SEED), False)
    ordinary = [step_signal(DEFAULTS, seed, step_fault(seed), False) for seed in ORDINARY_AIR_SEEDS]
    assert clean < DEFAULTS.step_min_change < min(ordinary)
    assert step_signal(DEFAULTS, CLEAN_AIR_SEED, step_fault(CLEAN_AIR_SEED), True) < clean


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_a_sudden_step_is_flagged_by_the_step_test_with_its_onset(seed: int) -> None:
    start, sites = fleet(seed, (step_fault(seed),), False)
    finding = {f.device_id: f for f in detect_drift(sites)}["colo-5"]
    assert finding.status == "drift" and finding.test == "step"
    assert finding.direction == ("down" if seed % 2 else "up")
    assert finding.onset is not None and finding.flagged_at is not None
    onset = start + round(ONSET_DAY * 24) * np.timedelta64(3600, "s")
    assert abs(float((finding.onset - onset) / np.timedelta64(3600, "s"))) <= 3


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_a_gain_drift_against_a_reference_is_flagged_by_the_trend_test_near_its_onset(seed: int) -> None:
    # the trend test fits the onset: within 5 hours of the truth where the air is ordinary (the box
    # alone with the station: with its neighbours beside it they flag it first)
    start, sites = fleet(seed, (drift_fault(),), True)
    finding = detect_drift(alone_at_station(sites, "colo-3"))[0]
    assert finding.status == "drift" and finding.test == "trend" and finding.direction == "up"
    assert finding.onset is not None
    onset = start + round(ONSET_DAY * 24) * np.timedelta64(3600, "s")
    assert abs(float((finding.onset - onset) / np.timedelta64(3600, "s"))) <= 5


def test_a_box_at_a_reference_with_boxes_beside_it_is_flagged_by_whichever_comparator_sees_it_first() -> None:
    # seed 4: the station alone needs 55 h (its white 1 µg/m³ an hour), the seven boxes beside it 37 h
    _, sites = fleet(4, (drift_fault(),), True)
    both = {f.device_id: f for f in detect_drift(sites)}["colo-3"]
    alone = detect_drift(alone_at_station(sites, "colo-3"))[0]
    neighbours = {f.device_id: f for f in detect_drift([s for s in sites if not s.is_reference])}["colo-3"]
    assert alone.comparator == "reference:moenv-banqiao" and neighbours.comparator == "neighbours:7"
    assert alone.flagged_at is not None and neighbours.flagged_at is not None
    assert neighbours.flagged_at < alone.flagged_at
    assert both.status == "drift" and both.flagged_at == neighbours.flagged_at
    assert both.comparator == "neighbours:7"
    # nothing flagged: each box's verdict is the station's, the better comparator
    healthy = detect_drift(fleet(4, (), True)[1])
    assert {(f.status, f.comparator) for f in healthy} == {("ok", "reference:moenv-banqiao")}


def test_boxes_sharing_a_bias_at_a_reference_do_not_call_the_box_that_agrees_with_it_drifting() -> None:
    # the seven others read 20 % low together (one batch); colo-8 agrees with the station
    _, sites = fleet(0, (), True)
    def low(site: Site) -> Site:
        return replace(site, series=HourlySeries(site.series.times, 0.8 * site.series.pm25))

    biased = [s if s.is_reference or s.site_id == "colo-8" else low(s) for s in sites]
    box = {f.device_id: f for f in detect_drift(biased)}["colo-8"]
    assert box.status == "ok" and box.comparator == "reference:moenv-banqiao"
    # without the agreement rule the neighbours' scan would flag it
    unguarded = {f.device_id: f for f in detect_drift(biased, DriftConfig(neighbour_agreement=10.0))}["colo-8"]
    assert unguarded.status == "drift" and unguarded.comparator == "neighbours:7"


def test_a_box_at_a_station_that_cannot_check_it_is_judged_by_its_neighbours() -> None:
    # the station reports only the last two days: too few paired hours for a baseline
    _, sites = fleet(1, (), True)
    short = [
        replace(s, series=HourlySeries(s.series.times[-48:], s.series.pm25[-48:])) if s.is_reference else s
        for s in sites
    ]
    findings = detect_drift(short)
    assert {(f.status, f.comparator) for f in findings} == {("ok", "neighbours:7")}


def test_without_the_change_point_tests_the_same_step_waits_for_the_cusum() -> None:
    # thresholds out of reach leave the CUSUM alone: it needs 4-5 h for these steps, the step test 1-3 h
    cusum_only = DriftConfig(step_threshold=10_000, trend_threshold=10_000)
    for seed in (1, 2, 3, 5):
        fast = delay_hours(DEFAULTS, seed, step_fault(seed), False)
        slow = delay_hours(cusum_only, seed, step_fault(seed), False)
        assert fast < slow, (seed, fast, slow)


def test_demo_city_healthy_boxes_raise_no_flag_in_sixty_days() -> None:
    # 59 boxes across Taipei with 5 % site differences, 7 % hourly noise each and the EPA
    # correction's bend between 30 and 50 raw µg/m³ (a ratio that depends on the air): no flag;
    # the demo's one drifting box is flagged
    healthy, drifting = demo_city(DEFAULTS, 60.0)
    flagged = [f.device_id for f in healthy if f.status == "drift"]
    print(f"\nlargest healthy statistics (cusum, step, trend) {largest_statistics(healthy)}")
    assert flagged == []
    assert drifting.status == "drift" and drifting.direction == "down"


@pytest.mark.parametrize("hours_later", [0, 77, 220, 341])
def test_demo_city_fourteen_day_windows_flag_only_the_drifting_box(hours_later: int) -> None:
    # the demo's look-back (14 days, as tests/devtools/test_demo_history.py) ending at other hours of
    # the day; 220 h later is the window closest to a false flag with threshold 12 (tp-school-0039
    # reads ~4 % high for a few days, and its neighbourhood includes the drifting box, left out of it)
    end = DEMO_END + np.timedelta64(hours_later * 3600 + 1234, "s")
    healthy, drifting = demo_city(DEFAULTS, 14.0, end=end)
    assert [f.device_id for f in healthy if f.status == "drift"] == []
    assert drifting.status == "drift"


@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS)
def test_the_thirty_seed_study_gives_the_documented_figures(setup: str) -> None:
    reference, alone = SETUPS[setup]
    result = study(DEFAULTS, 30, reference, alone)
    print(f"\ndrift {sorted(result.drift)}\nstep {sorted(result.step)}\nlargest {result.largest_healthy}")
    cusum = DEFAULTS.reference_threshold if reference else DEFAULTS.threshold
    assert result.false_flags == 0 and result.largest_healthy_statistic < 0.8 * cusum
    # the change-point tests' healthy peaks (reference: step 6.9, trend 6.7) are their margin
    assert result.largest_healthy[1] < DEFAULTS.step_threshold and result.largest_healthy[2] < DEFAULTS.trend_threshold
    drift_max, step_max, drift_median, step_median, within_targets, ordinary_bounds = {
        "neighbours": (72, 60, 40, 1, (29, 28), (48, 6)),
        "reference": (96, 96, 40, 6, (22, 27), (72, 12)),
        "station": (64, 48, 28, 1, (29, 28), (42, 2)),
    }[setup]
    assert max(result.drift) <= drift_max and max(result.step) <= step_max
    assert float(np.median(result.drift)) <= drift_median and float(np.median(result.step)) <= step_median
    within = sum(d <= 48 for d in result.drift), sum(s <= 12 for s in result.step)
    assert within >= within_targets, within
    # what misses the targets began in clean air: in ordinary air a box alone at the reference is
    # flagged within 3 days and 12 h (its own CUSUM threshold); within 2 days and 6 h against
    # neighbours; within 1.75 days and 2 h at the station with its neighbours
    ordinary_drift, ordinary_step = result.ordinary(result.drift), result.ordinary(result.step)
    assert len(ordinary_drift) == 27
    assert max(ordinary_drift) <= ordinary_bounds[0] and max(ordinary_step) <= ordinary_bounds[1]


def test_a_box_found_drifting_is_left_out_of_its_neighbours_comparison() -> None:
    healthy = {f.device_id: f for f in detect_drift(fleet(1, (), False)[1])}
    findings = {f.device_id: f for f in detect_drift(fleet(1, (drift_fault(),), False)[1])}
    assert findings["colo-3"].status == "drift"
    assert findings["colo-3"].comparator == healthy["colo-3"].comparator
    for name, finding in findings.items():
        if name == "colo-3":
            continue
        before = int(healthy[name].comparator.split(":")[1])
        assert finding.status == "ok" and finding.comparator == f"neighbours:{before - 1}", (name, finding)


def test_boxes_that_read_exactly_alike_are_ok() -> None:
    _, sites = fleet(1, (), False)
    same = [Site(s.site_id, s.lat, s.lon, sites[0].series) for s in sites]
    findings = detect_drift(same)
    assert {f.status for f in findings} == {"ok"} and {f.scale for f in findings} == {DEFAULTS.min_scale}


def test_a_box_cut_off_from_comparators_is_insufficient_data_not_ok() -> None:
    _, sites = fleet(1, (), False)
    far = Site("far-away", 22.6, 120.3, sites[0].series)
    first = sites[0].series
    short = Site("new-box", sites[0].lat, sites[0].lon, HourlySeries(first.times[:30], first.pm25[:30]))
    findings = {f.device_id: f for f in detect_drift([*sites, far, short])}
    assert findings["far-away"].status == "insufficient_data"
    assert findings["new-box"].status == "insufficient_data"
    assert findings["colo-1"].status == "ok"


def test_a_box_already_off_when_the_look_back_starts_is_flagged_by_its_level() -> None:
    _, sites = fleet(2, (), False)
    off = sites[3]
    sites[3] = Site(off.site_id, off.lat, off.lon, HourlySeries(off.series.times, off.series.pm25 * 1.6))
    finding = {f.device_id: f for f in detect_drift(sites)}["colo-4"]
    assert finding.status == "drift" and finding.direction == "up" and finding.test == "level"
    assert finding.baseline_ratio > 1.3


@pytest.mark.parametrize(
    ("setting", "config"),
    [
        ("threshold", DriftConfig(threshold=0.0)),
        ("step_threshold", DriftConfig(step_threshold=-1.0)),
        ("step_hours", DriftConfig(step_hours=1)),
        ("min_drift", DriftConfig(min_drift=-0.1)),
        ("trend_hours", DriftConfig(trend_hours=6)),
        ("trend_threshold", DriftConfig(trend_threshold=0.0)),
        ("radius_km", DriftConfig(neighbour_radius_km=0.0)),
    ],
)
def test_a_setting_that_cannot_work_is_refused(setting: str, config: DriftConfig) -> None:
    with pytest.raises(ValueError, match=setting):
        detect_drift(fleet(3, (), False)[1], config)


def test_every_tunable_setting_takes_its_default_and_refuses_its_bounds() -> None:
    for tunable in TUNABLES:
        assert getattr(config_from({tunable.name: tunable.default}), tunable.field) == tunable.default
        with pytest.raises(ValueError, match=tunable.name):
            config_from({tunable.name: tunable.maximum * 2 + 1})
        below = tunable.minimum if tunable.open_below else tunable.minimum - 1
        with pytest.raises(ValueError, match=tunable.name):
            config_from({tunable.name: below})
    assert config_from({"step_threshold": 7, "trend_hours": 48}) == DriftConfig(step_threshold=7.0, trend_hours=48)
