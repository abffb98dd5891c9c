"""Drift detection: compare each device with a co-located reference or its neighbours' median.

Optical PM sensors drift (dust on the laser, fan wear, a clogged inlet) slowly enough that
no single reading looks wrong. Neighbouring boxes see the same air mass most hours, so a
device whose ratio to the median of its neighbours moves away from 1 for a sustained
period is drifting, or badly placed; either way it needs attention. A reference station
within `colocated_km` is a better comparator than neighbours and is used instead.

The test is deliberately simple and explainable to a bureau: over a rolling window of
`window_hours`, ratio = sum(device) / sum(comparator) and diff = median(device - comparator);
a window is bad when |ratio - 1| > `ratio_threshold` *and* |diff| > `abs_threshold` (the
absolute floor keeps clean-air hours, where ratios are noisy, from raising alarms); a
device is flagged after `persistence` consecutive bad windows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from calibration.series import ONE_HOUR, FloatArray, HourlySeries, TimeArray

EARTH_RADIUS_KM = 6371.0088


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
    """Thresholds; the defaults flag a 15 %/day gain drift within about two days."""

    window_hours: int = 24
    neighbour_radius_km: float = 3.0
    colocated_km: float = 0.1
    min_neighbours: int = 2
    min_coverage: float = 0.75
    ratio_threshold: float = 0.25
    abs_threshold: float = 3.0
    persistence: int = 3


@dataclass(frozen=True)
class DriftFinding:
    """The verdict for one device; `flagged_at` is the end of the window that confirmed drift."""

    device_id: str
    status: str  # "drift", "ok" or "insufficient_data"
    comparator: str
    flagged_at: np.datetime64 | None
    ratio: float
    diff: float
    windows: int

    @property
    def needs_attention(self) -> bool:
        """Drifting devices and devices nobody can check both need a visit."""
        return self.status != "ok"


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


def _scan(
    device_id: str, comparator: str, own: FloatArray, other: FloatArray, *, grid: TimeArray, cfg: DriftConfig
) -> DriftFinding:
    both = np.isfinite(own) & np.isfinite(other)
    windows = 0
    run = 0
    ratio = diff = float("nan")
    flagged_at: np.datetime64 | None = None
    need = max(1, math.ceil(cfg.min_coverage * cfg.window_hours))
    for end in range(cfg.window_hours - 1, grid.size):
        sl = slice(end - cfg.window_hours + 1, end + 1)
        ok = both[sl]
        if int(ok.sum()) < need:
            run = 0
            continue
        a, b = own[sl][ok], other[sl][ok]
        windows += 1
        total = float(b.sum())
        ratio = float(a.sum()) / total if total > 0 else float("inf")
        diff = float(np.median(a - b))
        bad = abs(ratio - 1.0) > cfg.ratio_threshold and abs(diff) > cfg.abs_threshold
        run = run + 1 if bad else 0
        if run >= cfg.persistence and flagged_at is None:
            flagged_at = grid[end]
    if windows == 0:
        return DriftFinding(device_id, "insufficient_data", comparator, None, ratio, diff, 0)
    status = "drift" if flagged_at is not None else "ok"
    return DriftFinding(device_id, status, comparator, flagged_at, ratio, diff, windows)


def detect_drift(sites: list[Site], config: DriftConfig | None = None) -> list[DriftFinding]:
    """One finding per non-reference site, in input order."""
    cfg = config or DriftConfig()
    if cfg.window_hours < 1 or cfg.persistence < 1:
        raise ValueError("window_hours and persistence must be at least 1")
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
