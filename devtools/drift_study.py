"""Measure the drift detector's delays and false-alarm rate on seeded fleets: the figures docs/calibration.md quotes.

`python -m devtools.drift_study --seeds 30` runs, per seed, a healthy fleet (false alarms),
a 10 %/day gain drift and a ±30 % gain step from day 40 (detection delays), in three setups
(`SETUPS`): boxes against their neighbours, each box alone at a reference station (the
station is its only comparator), and the boxes together at the station (each against the
station and its neighbours), for each `--threshold` given (and any other setting with
`--set name=value`); then the demo city (devtools/simulator: 60
boxes across Taipei, the one drifting box of the demo) over 60 days and four of its 14-day
windows (the demo's look-back), for its healthy boxes' false flags. It prints the median and
the worst delays with the seeds that gave them, the largest statistic a healthy box reached
in each test (the margin below its threshold), and the delays split by the air after the
onset: a gain change moves a reading by a share of what the box measures above its offset,
so in clean air (below `CLEAN_AIR_UGM3` over the first day) there is little to see.
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
DEMO_WINDOW_HOURS = (0, 77, 220, 341)  # 14-day windows ending this many hours after DEMO_END (other hours of day)
CLEAN_AIR_UGM3 = 6.0  # fleet mean over the first day after the onset below this: clean air


SETUPS = ("neighbours", "reference", "station")  # see the module docstring; "reference": each box alone


def fleet(seed: int, faults: tuple[Fault, ...], reference: bool) -> tuple[np.datetime64, list[Site]]:
    """The study's fleet of 8 boxes; with `reference`, every box stands at the station (the comparator)."""
    if reference:
        return calibrated_fleet(seed, faults, spread_km=0.05, local_sd=0.01, local_phi=0.9, with_reference=True)
    return calibrated_fleet(seed, faults)


def alone_at_station(sites: list[Site], device_id: str) -> list[Site]:
    """The reference stations and one box: the station is its only comparator."""
    return [s for s in sites if s.is_reference or s.site_id == device_id]


def findings_of(sites: list[Site], config: DriftConfig, alone: bool) -> list[DriftFinding]:
    """`detect_drift` on the fleet, or with `alone` on each box with the reference station only (its one
    comparator: a box co-located by itself)."""
    if not alone:
        return detect_drift(sites, config)
    return [f for s in sites if not s.is_reference for f in detect_drift(alone_at_station(sites, s.site_id), config)]


def delay_hours(config: DriftConfig, seed: int, fault: Fault, reference: bool, alone: bool = False) -> float:
    """Hours from the fault's onset to the flag on its box (inf if never flagged, negative if before);
    `alone`: the box with the station only."""
    start, sites = fleet(seed, (fault,), reference)
    if alone and reference:  # only the faulted box, with the station
        sites = alone_at_station(sites, fault.device_id)
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


def air_after_onset(sites: list[Site], start: np.datetime64) -> float:
    """The boxes' mean PM2.5 over the first day after the onset (µg/m³): what a gain change acts on."""
    onset = hour_after(start, ONSET_DAY)
    day = [s.series.pm25[(s.series.times >= onset) & (s.series.times < onset + 24 * ONE_HOUR)]
           for s in sites if not s.is_reference]
    return float(np.nanmean(np.concatenate(day)))


def step_signal(config: DriftConfig, seed: int, fault: Fault, reference: bool, hours: int = 12) -> float:
    """What the fault does to its box's log ratio over its first `hours`, without noise: the median of
    log((faulted + floor)/(healthy + floor)) for the same seed (every random draw the same but the fault).
    A 30 % gain step shows as 0.2-0.3 in ordinary air; in clean air the box's calibration offset is most
    of its reading, and the step shows as a few hundredths, under `step_min_change` and a few hours' noise."""
    floor = config.reference_floor_ugm3 if reference else config.floor_ugm3
    start, faulted = fleet(seed, (fault,), reference)
    _, healthy = fleet(seed, (), reference)
    box = next(i for i, site in enumerate(faulted) if site.site_id == fault.device_id)
    times = faulted[box].series.times
    onset = hour_after(start, ONSET_DAY)
    window = (times >= onset) & (times < onset + hours * ONE_HOUR)
    ratio = np.log((faulted[box].series.pm25[window] + floor) / (healthy[box].series.pm25[window] + floor))
    return float(np.nanmedian(np.abs(ratio)))


def largest_statistics(findings: list[DriftFinding]) -> tuple[float, float, float]:
    """The largest (CUSUM, step, trend) statistic among `findings`."""
    return (
        max(f.statistic for f in findings),
        max(f.step_statistic for f in findings),
        max(f.trend_statistic for f in findings),
    )


@dataclass(frozen=True)
class StudyResult:
    """Delays (hours; inf = never flagged) and the air after the onset per seed, false flags and the
    largest healthy statistic of each test (CUSUM, step, trend)."""

    drift: list[float]
    step: list[float]
    air: list[float]
    signal: list[float]  # step_signal of each seed's step
    false_flags: int
    runs: int
    largest_healthy: tuple[float, float, float]

    @property
    def largest_healthy_statistic(self) -> float:
        """The CUSUM's (its threshold is `threshold`)."""
        return self.largest_healthy[0]

    def ordinary(self, delays: list[float]) -> list[float]:
        """The delays of the seeds whose fault began in ordinary air (at least CLEAN_AIR_UGM3)."""
        return [d for d, air in zip(delays, self.air, strict=True) if air >= CLEAN_AIR_UGM3]

    @staticmethod
    def worst(values: list[float]) -> str:
        order = np.argsort(values)[::-1][:3]
        return ", ".join(f"seed {int(i)}: {values[int(i)]:.0f} h" for i in order)


def study(config: DriftConfig, seeds: int, reference: bool, alone: bool = False) -> StudyResult:
    """The study over `seeds` seeds against neighbours or (with `reference`) at a reference station,
    each box `alone` there or with the others."""
    false = runs = 0
    largest = (0.0, 0.0, 0.0)
    drifts, steps, air, signal = [], [], [], []
    for seed in range(seeds):
        start, sites = fleet(seed, (), reference)
        air.append(air_after_onset(sites, start))
        findings = findings_of(sites, config, alone and reference)
        false += sum(f.status == "drift" for f in findings)
        runs += len(findings)
        # at the station an unflagged box's finding is the station's: its neighbours' margins are the boxes' own
        margins = findings + (detect_drift([s for s in sites if not s.is_reference], config)
                              if reference and not alone else [])
        cusum, step_peak, trend = largest_statistics(margins)
        largest = (max(largest[0], cusum), max(largest[1], step_peak), max(largest[2], trend))
        drifts.append(delay_hours(config, seed, Fault("colo-3", "drift", ONSET_DAY, 0.10), reference, alone))
        step = Fault("colo-5", "step", ONSET_DAY, -0.3 if seed % 2 else 0.3)
        steps.append(delay_hours(config, seed, step, reference, alone))
        signal.append(step_signal(config, seed, step, reference))
    return StudyResult(drifts, steps, air, signal, false, runs, largest)


def describe(config: DriftConfig, result: StudyResult, setup: str) -> str:
    box_years = result.runs * DAYS / 365.25
    drift_days = [d / 24 for d in result.drift]
    ordinary_drift, ordinary_step = result.ordinary(result.drift), result.ordinary(result.step)
    clean = sorted((air, seed) for seed, air in enumerate(result.air) if air < CLEAN_AIR_UGM3)
    cusum, step, trend = result.largest_healthy
    return (
        f"{setup} threshold={config.cusum_threshold(setup != 'neighbours'):g}"
        f"{f' (its neighbours {config.threshold:g})' if setup == 'station' else ''}: "
        f"false flags {result.false_flags} in {result.runs} healthy box-runs of {DAYS} days "
        f"({result.false_flags / box_years:.2f} per box-year; largest healthy statistic cusum {cusum:.1f}, "
        f"step {step:.1f}, trend {trend:.1f}); "
        f"10 %/day drift flagged after median {np.median(drift_days):.2f} d (max {max(drift_days):.2f}; "
        f"{StudyResult.worst(result.drift)}; within 48 h {sum(d <= 48 for d in result.drift)} of {len(result.drift)}); "
        f"30 % step after median {np.median(result.step):.0f} h (90th percentile "
        f"{np.percentile(result.step, 90):.0f} h, max {max(result.step):.0f} h; {StudyResult.worst(result.step)}; "
        f"within 12 h {sum(d <= 12 for d in result.step)} of {len(result.step)}); "
        f"in ordinary air ({len(ordinary_drift)} seeds) drift max {max(ordinary_drift, default=math.nan) / 24:.2f} d, "
        f"step max {max(ordinary_step, default=math.nan):.0f} h, the step's first 12 h moving the log ratio by "
        f"{min(result.ordinary(result.signal), default=math.nan):.3f} at least; clean air: "
        + ", ".join(f"seed {seed} ({air:.1f} µg/m³): drift {result.drift[seed]:.0f} h, step {result.step[seed]:.0f} h "
                    f"(moving it by {result.signal[seed]:.3f})" for air, seed in clean)
    )


def demo_city(
    config: DriftConfig, days: float, end: np.datetime64 = DEMO_END
) -> tuple[list[DriftFinding], DriftFinding]:
    """(healthy boxes' findings, the drifting box's finding) on the demo city over `days` days before `end`."""
    findings = detect_drift(demo_city_sites(days, end=end), config)
    drifting = next(f for f in findings if f.device_id == DRIFTING_BOX)
    return [f for f in findings if f.device_id != DRIFTING_BOX], drifting


def describe_demo(config: DriftConfig, days: float, window_hours: tuple[int, ...] = DEMO_WINDOW_HOURS) -> str:
    healthy, drifting = demo_city(config, days)
    flagged = sorted(f.device_id for f in healthy if f.status == "drift")
    checked = sum(f.status != "insufficient_data" for f in healthy)
    windows = [demo_city(config, 14.0, end=DEMO_END + np.timedelta64(h * 3600 + 1234, "s")) for h in window_hours]
    window_flags = sorted({f.device_id for found, _ in windows for f in found if f.status == "drift"})
    worst = [max(largest_statistics(found)[k] for found, _ in windows) for k in range(3)]
    cusum, step, trend = largest_statistics(healthy)
    return (
        f"demo city threshold={config.threshold:g}, {days:g} days: {len(flagged)} of {checked} healthy boxes "
        f"flagged{' (' + ', '.join(flagged) + ')' if flagged else ''}, largest healthy statistic cusum "
        f"{cusum:.1f}, step {step:.1f}, trend {trend:.1f}; {DRIFTING_BOX} {drifting.status} "
        f"({drifting.test}, {DEMO_DRIFT_DAYS:g} days of 10 %/day gain loss); "
        f"{len(window_hours)} windows of 14 days: "
        f"{len(window_flags)} healthy boxes flagged{' (' + ', '.join(window_flags) + ')' if window_flags else ''}, "
        f"largest statistic cusum {worst[0]:.1f}, step {worst[1]:.1f}, trend {worst[2]:.1f}, {DRIFTING_BOX} flagged in "
        f"{sum(d.status == 'drift' for _, d in windows)}"
    )


def setting(text: str) -> tuple[str, float]:
    """`name=value` of a DriftConfig field (the `--set` option)."""
    name, _, value = text.partition("=")
    if name not in DriftConfig.__dataclass_fields__ or not value:
        raise argparse.ArgumentTypeError(f"expected name=value with a DriftConfig field, got {text!r}")
    return name, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--threshold", type=float, action="append")
    parser.add_argument("--set", type=setting, action="append", default=[], metavar="NAME=VALUE",
                        help="any other DriftConfig setting, e.g. step_threshold=8")
    parser.add_argument("--demo-days", type=float, default=60.0)
    parser.add_argument("--demo-windows", type=int, default=0,
                        help="that many 14-day demo windows ending 5 h apart (default: DEMO_WINDOW_HOURS)")
    parser.add_argument("--demo-only", action="store_true", help="skip the study fleets")
    args = parser.parse_args()
    base = DriftConfig()
    for name, value in args.set:
        base = replace(base, **{name: type(getattr(base, name))(value)})
    for threshold in args.threshold or [base.threshold]:
        config = replace(base, threshold=threshold)
        if not args.demo_only:
            for setup in SETUPS:
                result = study(config, args.seeds, setup != "neighbours", alone=setup == "reference")
                print(describe(config, result, setup), flush=True)
        windows = tuple(5 * k for k in range(args.demo_windows)) if args.demo_windows else DEMO_WINDOW_HOURS
        print(describe_demo(config, args.demo_days, windows), flush=True)


if __name__ == "__main__":
    main()
