"""The device, neighbourhood and pipeline conditions on synthetic snapshots (pure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from alerts.conditions import (
    Activity,
    DeviceInfo,
    FlagCounts,
    HumidityCounts,
    PipelineStats,
    StuckRun,
    flag_rate_reasons,
    humidity_pinned_reasons,
    observed_interval_s,
    pipeline_findings,
    silent_devices,
    stuck_metrics,
)
from alerts.neighbourhood import far_from_neighbours, hotspots, neighbours_within, weighted_median
from alerts.rules import DeviceRules, PipelineRule, load_rules, parse_rules

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
BOOK = load_rules(None)


def rules_of(device: DeviceInfo) -> DeviceRules:
    return BOOK.for_device(device.device_id, device.school, device.district)


def box(i: int, lat: float = 25.03, lon: float = 121.55) -> DeviceInfo:
    return DeviceInfo(f"box-{i}", "airbox", "S", None, lat, lon)


def test_silence_uses_observed_cadence_then_configured_interval() -> None:
    times = tuple(NOW - timedelta(seconds=10 * (i + 1)) for i in range(7))  # every 10 s, last one 10 s ago
    assert observed_interval_s(times) == 10
    quiet = Activity("box-1", NOW - timedelta(seconds=31), times)
    fine = Activity("box-2", NOW - timedelta(seconds=29), times)
    found = silent_devices([box(1), box(2)], {"box-1": quiet, "box-2": fine}, rules_of, NOW)
    assert [f.subject for f in found] == ["box-1"]
    assert found[0].evidence["interval_source"] == "observed"
    configured = parse_rules({"version": "1", "overrides": [{"device": "box-2", "device_silent": {"interval_s": 5}}]})
    found = silent_devices([box(2)], {"box-2": fine}, lambda d: configured.for_device(d.device_id, None, None), NOW)
    assert found and found[0].evidence["interval_source"] == "configured"


def test_stuck_needs_an_hour_of_stuck_readings_up_to_the_newest() -> None:
    devices = {"box-1": box(1), "box-2": box(2), "box-3": box(3)}
    runs = [
        StuckRun("box-1", "pm25", NOW, NOW - timedelta(minutes=61), NOW - timedelta(hours=2)),
        StuckRun("box-2", "pm25", NOW, NOW - timedelta(minutes=30), NOW - timedelta(hours=2)),
        StuckRun("box-3", "pm25", NOW, NOW, NOW - timedelta(hours=2)),  # newest reading fine again
    ]
    assert [f.subject for f in stuck_metrics(devices, runs, rules_of)] == ["box-1:pm25"]


def test_flag_rate_and_pinned_humidity() -> None:
    devices = {"box-1": box(1), "box-2": box(2)}
    assert list(flag_rate_reasons(devices, [FlagCounts("box-1", 100, 30), FlagCounts("box-2", 100, 10)], rules_of)) == [
        "box-1"
    ]
    pinned = humidity_pinned_reasons(
        devices, [HumidityCounts("box-1", 100, 99), HumidityCounts("box-2", 100, 50)], rules_of
    )
    assert list(pinned) == ["box-1"]


def _hours(n: int) -> list[int]:
    start = int(NOW.replace(minute=0).timestamp())
    return [start - 3600 * i for i in reversed(range(n))]


def _city(
    values: dict[int, float], n: int = 8, seed: int = 1
) -> tuple[list[DeviceInfo], dict[str, dict[int, float]]]:
    rnd = random.Random(seed)
    devices = [box(i, 25.03 + 0.002 * (i % 3), 121.55 + 0.002 * (i // 3)) for i in range(n)]
    hourly = {
        d.device_id: {h: values.get(i, 15.0) + rnd.uniform(-1.5, 1.5) for h in _hours(3)} for i, d in enumerate(devices)
    }
    return devices, hourly


def test_a_local_source_of_30_is_ranked_first_and_a_weaker_one_second() -> None:
    devices, hourly = _city({2: 45.0, 5: 28.0})
    found = hotspots(devices, hourly, _hours(3), rules_of)
    assert [f.subject for f in found] == ["box-2", "box-5"]
    assert found[0].evidence["rank"] == 1 and 27 < found[0].evidence["excess_ugm3"] < 33


def test_a_dying_fan_is_far_from_its_neighbours_and_no_hotspot() -> None:
    devices, hourly = _city({3: 0.3})
    far = far_from_neighbours(devices, hourly, _hours(3), rules_of)
    assert list(far) == ["box-3"]
    ratio = far["box-3"]["ratio"]
    assert isinstance(ratio, float) and ratio < 0.1
    assert hotspots(devices, hourly, _hours(3), rules_of) == []


def test_neighbours_are_found_by_grid_within_the_radius_nearest_first() -> None:
    devices = [box(0, 25.0, 121.5), box(1, 25.0, 121.51), box(2, 25.0, 121.52), box(3, 25.5, 121.5)]
    near = neighbours_within(devices, 2.5, 8)
    assert [n.device_id for n in near["box-0"]] == ["box-1", "box-2"]
    assert near["box-3"] == []


def test_weighted_median_ignores_one_extreme_value() -> None:
    assert weighted_median([10, 11, 12, 500], [1, 1, 1, 1]) == 11
    assert weighted_median([10, 20], [1, 3]) == 20


def test_pipeline_findings() -> None:
    rule = PipelineRule()
    stats = PipelineStats(NOW - timedelta(minutes=10), 30, 100, 10, 3)
    assert {f.subject for f in pipeline_findings(stats, rule, NOW)} == {
        "ingest_lag",
        "dead_letter_ratio",
        "devices_silent",
    }
    assert pipeline_findings(PipelineStats(NOW, 0, 100, 10, 1), rule, NOW) == []
