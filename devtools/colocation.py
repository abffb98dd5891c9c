"""Seeded synthetic co-location campaigns: air boxes beside a reference station, with known truth.

What a bureau's campaign looks like, with every coefficient known so a test can say how close
a fit or a drift detector came:

* a city-wide PM2.5 field (common-mode pollution: a diurnal cycle on top of multi-day
  episodes, log-normal, 3-150 µg/m³), the same for every site;
* each site sees it through its own slow local effect (an AR(1) factor per hour, a road or a
  kitchen nearby), smaller for boxes standing at the reference station;
* each box reads ``raw = (local truth - offset) / gain`` with per-minute sensor noise, so the
  correct calibration is ``value = gain * raw + offset`` (a `linear` model with a = gain,
  b = offset); minute readings are averaged to hours as the fit does;
* the reference station reports hourly averages of the truth at its site with its own noise;
* optional faults on one box: outlier hours (+50..+150 µg/m³), a gain drift (raw grows by
  ``rate`` per day from the onset) or a sudden step in gain.

`python -m devtools.colocation --out DIR` writes the files the calibration guide walks
through: ``readings.csv`` (device,time,metric,value: the `citysense import` CSV layout),
``reference.csv`` (time,pm25,rh), ``reference_moenv.csv`` (the MOENV station layout) and
``truth.json`` (the coefficients and faults).
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from calibration.drift import Site
from calibration.series import ONE_HOUR, FloatArray, HourlySeries, TimeArray

START_DEFAULT = "2025-03-01T00:00:00"
REFERENCE_LAT, REFERENCE_LON = 25.0129, 121.4579  # beside MOENV Banqiao


@dataclass(frozen=True)
class Fault:
    """A fault on one box from `onset_day`: outliers, a gain drift per day, or a gain step."""

    device_id: str
    kind: str  # "outliers", "drift" or "step"
    onset_day: float = 0.0
    size: float = 0.0  # drift: gain change per day; step: gain change; outliers: fraction of hours


@dataclass(frozen=True)
class BoxTruth:
    """The coefficients of one box: value = gain * raw + offset recovers the local truth."""

    device_id: str
    lat: float
    lon: float
    gain: float
    offset: float


@dataclass(frozen=True)
class Campaign:
    """Hourly device means (raw, and RH), the reference and what produced them."""

    start: np.datetime64
    boxes: list[BoxTruth]
    minute_times: TimeArray
    minute_raw: dict[str, FloatArray]
    minute_rh: FloatArray
    reference: HourlySeries
    faults: list[Fault] = field(default_factory=list)
    outlier_hours: dict[str, TimeArray] = field(default_factory=dict)

    def hourly(self, device_id: str) -> HourlySeries:
        """The box's minute readings averaged to UTC hours (what `hourly_series` gives from the database)."""
        minutes = self.minute_raw[device_id]
        per_hour = minutes.reshape(-1, 60)
        rh = self.minute_rh.reshape(-1, 60).mean(axis=1)
        times = self.minute_times[::60]
        return HourlySeries(times=times, pm25=per_hour.mean(axis=1), rh=rh)


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> FloatArray:
    """A stationary AR(1) series with marginal standard deviation `sd`."""
    out = np.empty(n)
    innovation = sd * np.sqrt(1 - phi**2)
    out[0] = rng.normal(0, sd)
    shocks = rng.normal(0, innovation, n)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return np.asarray(out, dtype=np.float64)


def city_field(rng: np.random.Generator, hours: int) -> FloatArray:
    """Common-mode hourly PM2.5 of the city: diurnal rush hours on multi-day episodes."""
    t = np.arange(hours)
    diurnal = 0.25 * np.sin(2 * np.pi * (t - 7) / 24) + 0.15 * np.sin(4 * np.pi * (t - 5) / 24)
    episodes = _ar1(rng, hours, 0.985, 0.55)
    return np.asarray(np.clip(np.exp(np.log(18.0) + diurnal + episodes), 3.0, 150.0), dtype=np.float64)


def generate(
    seed: int,
    *,
    days: int = 60,
    boxes: int = 4,
    start: str = START_DEFAULT,
    spread_km: float = 0.05,
    local_sd: float = 0.01,
    local_phi: float = 0.9,
    sensor_noise: float = 2.0,
    faults: tuple[Fault, ...] = (),
) -> Campaign:
    """A campaign of `boxes` boxes within `spread_km` of the reference for `days` days of minutes."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    origin = np.datetime64(start, "s")
    minute_times = origin + np.arange(hours * 60) * np.timedelta64(60, "s")
    city = city_field(rng, hours)
    hour_of_minute = np.arange(hours * 60) / 60.0
    rh_hourly = np.clip(75 + 12 * np.sin(2 * np.pi * (np.arange(hours) - 16) / 24) + _ar1(rng, hours, 0.95, 6), 30, 99)
    minute_rh = np.interp(hour_of_minute, np.arange(hours) + 0.5, rh_hourly)
    truths: list[BoxTruth] = []
    minute_raw: dict[str, FloatArray] = {}
    outlier_hours: dict[str, TimeArray] = {}
    degrees = spread_km / 111.0
    for k in range(boxes):
        device_id = f"colo-{k + 1}"
        box = BoxTruth(
            device_id,
            round(REFERENCE_LAT + degrees * np.cos(2 * np.pi * k / boxes), 6),
            round(REFERENCE_LON + degrees * np.sin(2 * np.pi * k / boxes), 6),
            gain=round(float(rng.uniform(0.55, 0.75)), 4),
            offset=round(float(rng.uniform(1.0, 3.0)), 3),
        )
        truths.append(box)
        local = city * np.exp(_ar1(rng, hours, local_phi, local_sd))
        per_minute = np.interp(hour_of_minute, np.arange(hours) + 0.5, local)
        per_minute = per_minute * np.exp(rng.normal(0, 0.05, per_minute.size))  # sub-hour turbulence
        raw = (per_minute - box.offset) / box.gain + rng.normal(0, sensor_noise, per_minute.size)
        days_in = hour_of_minute / 24.0
        for fault in (f for f in faults if f.device_id == device_id):
            after = days_in >= fault.onset_day
            if fault.kind == "drift":
                raw = raw * (1 + fault.size * np.clip(days_in - fault.onset_day, 0, None))
            elif fault.kind == "step":
                raw = np.where(after, raw * (1 + fault.size), raw)
            elif fault.kind == "outliers":
                count = round(fault.size * hours)
                picked = np.sort(rng.choice(hours, size=count, replace=False))
                bump = np.zeros(hours)
                bump[picked] = rng.uniform(50, 150, count)
                raw = raw + np.repeat(bump, 60)
                outlier_hours[device_id] = minute_times[::60][picked]
            else:
                raise ValueError(f"unknown fault kind {fault.kind!r}")
        minute_raw[device_id] = np.clip(raw, 0, None)
    reference_truth = city * np.exp(_ar1(rng, hours, local_phi, local_sd))
    reference = HourlySeries(
        times=minute_times[::60],
        pm25=np.round(np.clip(reference_truth + rng.normal(0, 1.0, hours), 0, None), 1).astype(np.float64),
        rh=np.round(rh_hourly, 0),
    )
    return Campaign(origin, truths, minute_times, minute_raw, minute_rh, reference, list(faults), outlier_hours)


def _iso(moment: np.datetime64) -> str:
    return str(moment.astype("datetime64[s]")) + "Z"


def write_readings_csv(campaign: Campaign, path: Path, *, every_minutes: int = 1) -> int:
    """The `citysense import` CSV (device,time,metric,value), pm25 and rh every `every_minutes`."""
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("device", "time", "metric", "value"))
        picks = np.arange(0, campaign.minute_times.size, every_minutes)
        stamps = [_iso(t) for t in campaign.minute_times[picks]]
        rh = campaign.minute_rh[picks]
        for box in campaign.boxes:
            raw = campaign.minute_raw[box.device_id][picks]
            for stamp, pm, hum in zip(stamps, raw, rh, strict=True):
                writer.writerow((box.device_id, stamp, "pm25", f"{pm:.2f}"))
                writer.writerow((box.device_id, stamp, "rh", f"{hum:.1f}"))
                rows += 2
    return rows


def write_reference_csv(series: HourlySeries, path: Path) -> None:
    """The generic reference layout: time,pm25,rh (UTC, hour-start labels)."""
    lines = ["time,pm25,rh"]
    rh = series.rh if series.rh is not None else np.full(series.pm25.shape, np.nan)
    for t, pm, hum in zip(series.times, series.pm25, rh, strict=True):
        lines.append(f"{_iso(t)},{'' if np.isnan(pm) else f'{pm:.1f}'},{'' if np.isnan(hum) else f'{hum:.0f}'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_reference_moenv(series: HourlySeries, path: Path, station: str = "板橋") -> None:
    """The MOENV station layout (測站,日期,測項,00..23 in Taiwan time); hours outside the series are empty."""
    taipei = timedelta(hours=8)
    values: dict[tuple[str, str], list[str]] = {}
    rh = series.rh if series.rh is not None else np.full(series.pm25.shape, np.nan)
    for t, pm, hum in zip(series.times, series.pm25, rh, strict=True):
        local = datetime.fromtimestamp(int(t.astype(np.int64)), tz=UTC) + taipei
        day = local.strftime("%Y/%m/%d")
        for item, value in (("PM2.5", pm), ("RH", hum)):
            cells = values.setdefault((day, item), [""] * 24)
            cells[local.hour] = "" if np.isnan(value) else f"{value:.0f}" if item == "RH" else f"{value:.1f}"
    lines = ["測站,日期,測項," + ",".join(f"{h:02d}" for h in range(24))]
    for (day, item), cells in sorted(values.items()):
        lines.append(f"{station},{day},{item}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def calibrated_fleet(
    seed: int,
    faults: tuple[Fault, ...] = (),
    *,
    boxes: int = 8,
    spread_km: float = 1.5,
    local_sd: float = 0.02,
    local_phi: float = 0.7,
    with_reference: bool = False,
) -> tuple[np.datetime64, list[Site]]:
    """A fleet as drift detection sees it: calibrated hourly PM2.5 (calibrations off by ±3 %,
    3 % of hours missing), boxes within `spread_km`, and the reference station if asked."""
    campaign = generate(seed, boxes=boxes, spread_km=spread_km, local_sd=local_sd, local_phi=local_phi, faults=faults)
    rng = np.random.default_rng(seed + 1000)
    sites = []
    for box in campaign.boxes:
        hourly = campaign.hourly(box.device_id)
        values = (box.gain * hourly.pm25 + box.offset) * rng.normal(1.0, 0.03)
        values[rng.random(values.size) < 0.03] = np.nan
        sites.append(Site(box.device_id, box.lat, box.lon, HourlySeries(hourly.times, values)))
    if with_reference:
        sites.append(Site("moenv-banqiao", REFERENCE_LAT, REFERENCE_LON, campaign.reference, is_reference=True))
    return campaign.start, sites


def hour_after(start: np.datetime64, days: float) -> np.datetime64:
    """The hour `days` after `start` (fault onsets as times)."""
    return start + round(days * 24) * ONE_HOUR


def main(argv: list[str] | None = None) -> None:
    """Write a campaign's files (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Write a synthetic co-location campaign for the calibration guide.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--boxes", type=int, default=4)
    parser.add_argument("--every-minutes", type=int, default=1, help="one reading per device every N minutes")
    parser.add_argument("--drift-box", default="colo-4", help="box whose gain drifts ('' for none)")
    parser.add_argument("--drift-onset-day", type=float, default=45.0)
    parser.add_argument("--drift-per-day", type=float, default=0.10)
    args = parser.parse_args(argv)
    faults = (Fault(args.drift_box, "drift", args.drift_onset_day, args.drift_per_day),) if args.drift_box else ()
    campaign = generate(args.seed, days=args.days, boxes=args.boxes, faults=faults)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = write_readings_csv(campaign, args.out / "readings.csv", every_minutes=args.every_minutes)
    write_reference_csv(campaign.reference, args.out / "reference.csv")
    write_reference_moenv(campaign.reference, args.out / "reference_moenv.csv")
    truth = {"boxes": [asdict(b) for b in campaign.boxes], "faults": [asdict(f) for f in campaign.faults],
             "start": _iso(campaign.start), "days": args.days, "seed": args.seed}
    (args.out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {rows} readings of {len(campaign.boxes)} boxes and the reference to {args.out}")


if __name__ == "__main__":
    main()
