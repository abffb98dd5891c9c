"""Drift detection: a CUSUM on each device's hourly log ratio to a co-located reference or its neighbours.

Optical PM sensors drift (dust on the laser, fan wear, a clogged inlet) slowly enough that
no single reading looks wrong. Neighbouring boxes see the same air mass most hours, so a
device whose ratio to the median of its neighbours moves away from where it was is
drifting, or was moved; either way it needs attention. A reference station within
`colocated_km` is a better comparator than neighbours and is used instead.

The test, hour by hour (Page's CUSUM, two-sided, on robustly standardised values):

* x = log((device + floor) / (comparator + floor)) for every hour both have; the floor
  keeps clean-air hours, where a ratio of two small numbers is noise, from dominating.
  Against a reference station it is larger (`reference_floor_ugm3`): a low-cost sensor
  and a reference part ways at a few µg/m³ (the sensor clips its noise at zero), which
  neighbours share but a reference does not, and which is not drift;
* the first `baseline_hours` paired hours set the device's own level m (median of x) and
  scale s (MAD × 1.4826, at least `min_scale`): a box that reads 8 % above its neighbours
  all along is not drifting, one that starts to move away from its own level is;
* z = clip((x - m) / s, ±`clip`) (a single plume hour cannot raise more than `clip`);
  S⁺ = max(0, S⁺ + z − k), S⁻ = max(0, S⁻ − z − k) with k = `allowance`; the device is
  flagged when S⁺ or S⁻ exceeds h = `threshold`. `onset` is the last hour the statistic
  was zero before it crossed: the change-point estimate;
* a baseline level already off by more than `level_threshold` (the box was off before the
  look-back began) is flagged at the end of the baseline.

Statuses: `drift` (flagged), `ok` (compared, not flagged), `insufficient_data` (no
comparator, or fewer than `min_baseline_fraction` of the baseline hours paired: the device
cannot be checked and needs a visit or a co-location). docs/calibration.md gives the
detection delays and the false-alarm rate the defaults imply, measured by
tests/calibration/test_drift_cusum.py.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from calibration.series import ONE_HOUR, FloatArray, HourlySeries, TimeArray

EARTH_RADIUS_KM = 6371.0088
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Site:
    """A device or reference station with its calibrated hourly PM2.5."""

    site_id: str
    lat: float
    lon: float
    series: HourlySeries
    is_reference: bool = False


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the CUSUM (see the module docstring); docs/calibration.md gives their false-alarm rate."""

    neighbour_radius_km: float = 3.0
    colocated_km: float = 0.1
    min_neighbours: int = 2
    baseline_hours: int = 168
    max_correlation: float = 0.9
    min_baseline_fraction: float = 0.5
    floor_ugm3: float = 3.0
    reference_floor_ugm3: float = 10.0
    min_scale: float = 0.06
    allowance: float = 0.5
    threshold: float = 12.0
    clip: float = 4.0
    level_threshold: float = 0.25

    def check(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if self.baseline_hours < 24:
            raise ValueError(f"baseline_hours must be at least 24, got {self.baseline_hours}")
        if not 0 <= self.max_correlation < 1:
            raise ValueError(f"max_correlation must be in [0, 1), got {self.max_correlation}")
        if not 0 < self.min_baseline_fraction <= 1:
            raise ValueError(f"min_baseline_fraction must be in (0, 1], got {self.min_baseline_fraction}")
        for name in ("floor_ugm3", "reference_floor_ugm3", "min_scale", "threshold", "clip"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.allowance < 0 or self.level_threshold <= 0:
            raise ValueError("allowance must be >= 0 and level_threshold > 0")


@dataclass(frozen=True)
class DriftFinding:
    """The verdict for one device.

    `flagged_at` is the hour the CUSUM crossed its threshold, `onset` its estimate of when
    the change began; `ratio`/`diff` are the median device/comparator ratio and difference
    over the last 24 paired hours; `baseline_ratio` the level the baseline set; `statistic`
    the largest CUSUM value reached (in robust standard deviations); `direction` is `up` or
    `down` for a flagged device; `hours` the paired hours examined.
    """

    device_id: str
    status: str  # "drift", "ok" or "insufficient_data"
    comparator: str
    flagged_at: np.datetime64 | None
    ratio: float
    diff: float
    hours: int
    onset: np.datetime64 | None = None
    baseline_ratio: float = math.nan
    scale: float = math.nan
    statistic: float = 0.0
    direction: str | None = None

    @property
    def needs_attention(self) -> bool:
        """Drifting devices and devices nobody can check both need a visit."""
        return self.status != "ok"

    def as_json(self) -> dict[str, Any]:
        """The `calibrate drift --json` object (docs/calibration.md lists the fields); NaN becomes null."""

        def number(value: float, digits: int) -> float | None:
            return round(value, digits) if math.isfinite(value) else None

        def hour(moment: np.datetime64 | None) -> str | None:
            return None if moment is None else str(moment.astype("datetime64[s]")) + "Z"

        return {
            "device_id": self.device_id,
            "status": self.status,
            "needs_attention": self.needs_attention,
            "comparator": self.comparator,
            "flagged_at": hour(self.flagged_at),
            "onset": hour(self.onset),
            "direction": self.direction,
            "ratio": number(self.ratio, 4),
            "diff": number(self.diff, 2),
            "baseline_ratio": number(self.baseline_ratio, 4),
            "scale": number(self.scale, 4),
            "statistic": number(self.statistic, 2),
            "hours": self.hours,
        }


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def _grid(sites: list[Site]) -> TimeArray:
    starts = [s.series.times[0] for s in sites if len(s.series)]
    ends = [s.series.times[-1] for s in sites if len(s.series)]
    if not starts:
        return np.array([], dtype="datetime64[s]")
    return np.arange(min(starts), max(ends) + ONE_HOUR, ONE_HOUR)


def _on_grid(series: HourlySeries, grid: TimeArray) -> FloatArray:
    out = np.full(grid.shape, np.nan)
    idx = ((series.times - grid[0]) / ONE_HOUR).astype(np.int64)
    out[idx] = series.pm25
    return out


def _comparator(
    device: Site, sites: list[Site], matrix: dict[str, FloatArray], cfg: DriftConfig
) -> tuple[str, FloatArray | None]:
    references = [
        (distance_km(device.lat, device.lon, s.lat, s.lon), s) for s in sites if s.is_reference
    ]
    colocated = sorted((d, s.site_id) for d, s in references if d <= cfg.colocated_km)
    if colocated:
        ref_id = colocated[0][1]
        return f"reference:{ref_id}", matrix[ref_id]
    neighbours = [
        s.site_id
        for s in sites
        if s.site_id != device.site_id and distance_km(device.lat, device.lon, s.lat, s.lon) <= cfg.neighbour_radius_km
    ]
    if len(neighbours) < cfg.min_neighbours:
        return f"neighbours:{len(neighbours)}", None
    stack = np.vstack([matrix[n] for n in neighbours])
    counts = np.isfinite(stack).sum(axis=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pooled = np.nanmedian(stack, axis=0)
    median = np.where(counts >= cfg.min_neighbours, pooled, np.nan)
    return f"neighbours:{len(neighbours)}", median


def _recent(own: FloatArray, other: FloatArray, both: np.ndarray) -> tuple[float, float]:
    """Median ratio and difference over the last 24 paired hours."""
    idx = np.flatnonzero(both)[-24:]
    if idx.size == 0:
        return math.nan, math.nan
    a, b = own[idx], other[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(a / b)) if bool(np.all(b > 0)) else float(a.sum() / max(b.sum(), 1e-9))
    return ratio, float(np.median(a - b))


def _effective_scale(x: FloatArray, level: float, cfg: DriftConfig) -> float:
    """The hourly scale that makes a CUSUM of autocorrelated hours behave like one of independent ones.

    Neighbouring boxes disagree in runs (a kitchen, a road's rush hour), so consecutive
    hourly log ratios are correlated and a sum of n of them varies more than n times one
    hour's variance: for an AR(1) of lag-1 correlation φ, (1 + φ)/(1 − φ) times more. The
    robust hourly scale (MAD) is inflated by the square root of that, φ estimated on the
    baseline (capped at `max_correlation`).
    """
    finite = np.isfinite(x)
    centred = x[finite] - level
    mad = MAD_TO_SIGMA * float(np.median(np.abs(centred)))
    pairs = finite[1:] & finite[:-1]
    phi = 0.0
    if int(pairs.sum()) >= 8:
        a, b = x[1:][pairs] - level, x[:-1][pairs] - level
        denominator = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
        phi = float(np.sum(a * b)) / denominator if denominator > 0 else 0.0
    phi = min(max(phi, 0.0), cfg.max_correlation)
    return max(cfg.min_scale, mad * math.sqrt((1 + phi) / (1 - phi)))


def _scan(
    device_id: str, comparator: str, own: FloatArray, other: FloatArray, *, grid: TimeArray, cfg: DriftConfig
) -> DriftFinding:
    both = np.isfinite(own) & np.isfinite(other)
    paired = np.flatnonzero(both)
    ratio, diff = _recent(own, other, both)
    if paired.size == 0:
        return DriftFinding(device_id, "insufficient_data", comparator, None, ratio, diff, 0)
    first = int(paired[0])
    base_end = first + cfg.baseline_hours
    baseline = paired[paired < base_end]
    if baseline.size < cfg.min_baseline_fraction * cfg.baseline_hours:
        return DriftFinding(device_id, "insufficient_data", comparator, None, ratio, diff, int(paired.size))
    floor = cfg.reference_floor_ugm3 if comparator.startswith("reference:") else cfg.floor_ugm3
    with np.errstate(invalid="ignore"):
        x = np.log((np.clip(own, 0, None) + floor) / (np.clip(other, 0, None) + floor))
    level = float(np.median(x[baseline]))
    scale = _effective_scale(x[first:base_end], level, cfg)
    found = DriftFinding(
        device_id, "ok", comparator, None, ratio, diff, int(paired.size), baseline_ratio=math.exp(level), scale=scale
    )
    if abs(math.exp(level) - 1.0) > cfg.level_threshold:
        at = grid[min(base_end, grid.size) - 1]
        direction = "up" if level > 0 else "down"
        return replace(found, status="drift", flagged_at=at, onset=grid[first], direction=direction)
    z = np.clip((x[paired] - level) / scale, -cfg.clip, cfg.clip)
    up = down = peak = 0.0
    up_zero = down_zero = first
    for hour, value in zip(paired.tolist(), z.tolist(), strict=True):
        up = max(0.0, up + value - cfg.allowance)
        down = max(0.0, down - value - cfg.allowance)
        if up == 0.0:
            up_zero = hour
        if down == 0.0:
            down_zero = hour
        peak = max(peak, up, down)
        if hour >= base_end and (up > cfg.threshold or down > cfg.threshold):
            direction, zero = ("up", up_zero) if up > cfg.threshold else ("down", down_zero)
            onset = grid[min(zero + 1, hour)]
            return replace(
                found, status="drift", flagged_at=grid[hour], onset=onset, statistic=peak, direction=direction
            )
    return replace(found, statistic=peak)


def detect_drift(sites: list[Site], config: DriftConfig | None = None) -> list[DriftFinding]:
    """One finding per non-reference site, in input order."""
    cfg = config or DriftConfig()
    cfg.check()
    grid = _grid(sites)
    matrix = {s.site_id: _on_grid(s.series, grid) for s in sites} if grid.size else {}
    findings = []
    for device in sites:
        if device.is_reference:
            continue
        comparator, other = _comparator(device, sites, matrix, cfg) if grid.size else ("none", None)
        if other is None:
            findings.append(DriftFinding(device.site_id, "insufficient_data", comparator, None, math.nan, math.nan, 0))
            continue
        findings.append(_scan(device.site_id, comparator, matrix[device.site_id], other, grid=grid, cfg=cfg))
    return findings
