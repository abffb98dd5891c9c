"""Measure the drift detector's delays and false-alarm rate on seeded fleets: the figures docs/calibration.md quotes.

`python -m devtools.drift_study --seeds 30` runs, per seed, a healthy fleet (false alarms),
a 10 %/day gain drift and a ±30 % gain step from day 40 (detection delays), against
neighbours and against a co-located reference station, for each `--threshold` given; then
the demo city (devtools/simulator: 60 boxes across Taipei, the one drifting box of the demo)
over 60 days, for its healthy boxes' false flags. It prints the median and the worst delay
with the seeds that gave it, and the largest statistic a healthy box reached (the margin
below the threshold).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace

import numpy as np

from calibration.drift import DriftConfig, DriftFinding, Site, detect_drift
from calibration.models import default_model, parse_model
from calibration.series import ONE_HOUR, HourlySeries
from devtools.colocation import Fault, calibrated_fleet, hour_after
from devtools.simulator.fleet import DRIFTING_BOX, FleetModel, make_airboxes

ONSET_DAY = 40.0
DAYS = 60
DEMO_BOXES = 60
DEMO_END = np.datetime64("2026-12-01T00:00:00", "s")  # fixed, so the figures repeat
DEMO_DRIFT_DAYS = 5.0  # as the demo: DRIFTING_BOX loses gain over the last five days


def fleet(seed: int, faults: tuple[Fault, ...], reference: bool) -> tuple[np.datetime64, list[Site]]:
    """The study's fleet of 8 boxes; with `reference`, every box stands at the station (the comparator)."""
    if reference:
        return calibrated_fleet(seed, faults, spread_km=0.05, local_sd=0.01, local_phi=0.9, with_reference=True)
    return calibrated_fleet(seed, faults)


def delay_hours(config: DriftConfig, seed: int, fault: Fault, reference: bool) -> float:
    """Hours from the fault's onset to the flag on its box (inf if never flagged, negative if before)."""
    start, sites = fleet(seed, (fault,), reference)
    finding = {f.device_id: f for f in detect_drift(sites, config)}[fault.device_id]
    if finding.flagged_at is None:
        return math.inf
    return float((finding.flagged_at - hour_after(start, ONSET_DAY)) / ONE_HOUR)


def demo_city_sites(
    days: float, boxes: int = DEMO_BOXES, drifting: bool = True, end: np.datetime64 = DEMO_END
) -> list[Site]:
    """The demo city's air boxes as `calibrate drift` sees them, without a database: the simulator
    stepped hourly (as the demo's history is written) and each reading calibrated by the model the
    gateway applies to a PMS5003 box (the EPA correction, with the box's own RH)."""
    finish = float(end.astype("datetime64[s]").astype(np.int64))
    start = finish - days * 86400.0
    fleet_boxes = make_airboxes(boxes, drift_since=finish - DEMO_DRIFT_DAYS * 86400.0 if drifting else None)
    model = FleetModel(fleet_boxes, [])
    hours = round(days * 24)
    pm25, rh = np.zeros((boxes, hours)), np.zeros((boxes, hours))
    for h in range(hours):
        for k, (_, _, item) in enumerate(model.step(start + 3600.0 * h, 3600.0)):
            measured = item["m"]
            assert isinstance(measured, dict)
            pm25[k, h], rh[k, h] = measured["pm25"], measured["rh"]
    spec = default_model("pms5003", "pm25")
    assert spec is not None
    calibration = parse_model(spec)
    times = np.datetime64(int(start), "s") + np.arange(hours) * ONE_HOUR
    return [
        Site(box.device_id, box.lat, box.lon, HourlySeries(times, calibration.apply(pm25[k], rh[k])))
        for k, box in enumerate(fleet_boxes)
    ]


@dataclass(frozen=True)
class StudyResult:
    """Delays (hours; inf = never flagged) per seed, false flags and the largest healthy statistic."""

    drift: list[float]
    step: list[float]
    false_flags: int
    runs: int
    largest_healthy_statistic: float

    @staticmethod
    def worst(values: list[float]) -> str:
        order = np.argsort(values)[::-1][:3]
        return ", ".join(f"seed {int(i)}: {values[int(i)]:.0f} h" for i in order)


def study(config: DriftConfig, seeds: int, reference: bool) -> StudyResult:
    """The study over `seeds` seeds against neighbours or (with `reference`) a reference station."""
    false = runs = 0
    largest = 0.0
    drifts, steps = [], []
    for seed in range(seeds):
        _, sites = fleet(seed, (), reference)
        findings = detect_drift(sites, config)
        false += sum(f.status == "drift" for f in findings)
        runs += len(findings)
        largest = max(largest, *(f.statistic for f in findings))
        drifts.append(delay_hours(config, seed, Fault("colo-3", "drift", ONSET_DAY, 0.10), reference))
        step = Fault("colo-5", "step", ONSET_DAY, -0.3 if seed % 2 else 0.3)
        steps.append(delay_hours(config, seed, step, reference))
    return StudyResult(drifts, steps, false, runs, largest)


def describe(config: DriftConfig, result: StudyResult, reference: bool) -> str:
    box_years = result.runs * DAYS / 365.25
    drift_days = [d / 24 for d in result.drift]
    return (
        f"{'reference' if reference else 'neighbours'} threshold={config.threshold:g}: "
        f"false flags {result.false_flags} in {result.runs} healthy box-runs of {DAYS} days "
        f"({result.false_flags / box_years:.2f} per box-year; largest healthy statistic "
        f"{result.largest_healthy_statistic:.1f}); "
        f"10 %/day drift flagged after median {np.median(drift_days):.2f} d (max {max(drift_days):.2f}; "
        f"{StudyResult.worst(result.drift)}); "
        f"30 % step after median {np.median(result.step):.0f} h (90th percentile "
        f"{np.percentile(result.step, 90):.0f} h, max {max(result.step):.0f} h; {StudyResult.worst(result.step)})"
    )


def demo_city(
    config: DriftConfig, days: float, end: np.datetime64 = DEMO_END
) -> tuple[list[DriftFinding], DriftFinding]:
    """(healthy boxes' findings, the drifting box's finding) on the demo city over `days` days before `end`."""
    findings = detect_drift(demo_city_sites(days, end=end), config)
    drifting = next(f for f in findings if f.device_id == DRIFTING_BOX)
    return [f for f in findings if f.device_id != DRIFTING_BOX], drifting


def describe_demo(config: DriftConfig, days: float) -> str:
    healthy, drifting = demo_city(config, days)
    flagged = sorted(f.device_id for f in healthy if f.status == "drift")
    checked = sum(f.status != "insufficient_data" for f in healthy)
    return (
        f"demo city threshold={config.threshold:g}, {days:g} days: {len(flagged)} of {checked} healthy boxes "
        f"flagged{' (' + ', '.join(flagged) + ')' if flagged else ''}, largest healthy statistic "
        f"{max(f.statistic for f in healthy):.1f}; {DRIFTING_BOX} {drifting.status} "
        f"({drifting.test}, {DEMO_DRIFT_DAYS:g} days of 10 %/day gain loss)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--threshold", type=float, action="append")
    parser.add_argument("--demo-days", type=float, default=60.0)
    args = parser.parse_args()
    for threshold in args.threshold or [DriftConfig.threshold]:
        config = replace(DriftConfig(), threshold=threshold)
        for reference in (False, True):
            print(describe(config, study(config, args.seeds, reference), reference), flush=True)
        print(describe_demo(config, args.demo_days), flush=True)


if __name__ == "__main__":
    main()
