"""Drift detection: sequential tests on each device's hourly log ratio to a co-located reference and/or its neighbours.

Optical PM sensors drift (dust on the laser, fan wear, a clogged inlet) slowly enough that
no single reading looks wrong. Neighbouring boxes see the same air mass most hours, so a
device whose ratio to the median of its neighbours moves away from where it was is
drifting, or was moved; either way it needs attention. A reference station within
`colocated_km` is a better comparator than neighbours; a box standing there with other boxes
beside it is checked against both (`_comparators`), and the first to flag it gives the
verdict, else the station's (the neighbours' only where the station cannot check it): the
station is the truth, but its hourly noise is white and about 1 µg/m³, as large as a gain
change's first day in clean air, where the boxes beside it share its air and part from each
other by a few per cent (docs/calibration.md: a 10 %/day drift at the station flagged after
1.08 days in median, 1.52 against the station alone). The neighbours may speak there only
while the box agrees with them over its baseline within `neighbour_agreement`: boxes that
share a calibration bias (one batch, one campaign) would otherwise call the one box that
agrees with the station a drift, and the station has already said which side is right.

Hour by hour:

* x = log((device + floor) / (comparator + floor)) for every hour both have; the floor
  keeps a ratio of two near-zero numbers finite. Against a reference station it is larger
  (`reference_floor_ugm3`): a low-cost sensor and a reference part ways at a few µg/m³
  (the sensor clips its noise at zero), which neighbours share but a reference does not;
* the first `baseline_hours` paired hours set the device's own level m (median of x): a
  box that reads 8 % above its neighbours all along is not drifting, one that starts to
  move away from its own level is. Against a reference station the level is a gain error's
  instead, m(c) = log(((1 + e)·c + floor)/(c + floor)) with e set so the baseline's
  residuals have median zero: a box calibrated a few per cent high reads that share above
  the reference, which the large floor turns into a log ratio that grows with the air (a
  third of it at 5 µg/m³, most of it at 50), and a constant level would call a polluted
  week after a clean baseline a drift. (Neighbours are boxes calibrated as roughly as the
  device, under a small floor; their level stays one number.) They also set its noise as a function of the air
  (`Baseline`): s(c)² = a + b/(c + floor)², a relative part and an additive part that
  dominates in clean air, so each hour is weighed by what it can tell; and the lag-1
  correlation φ of the standardised hours (neighbours disagree in runs);
* slow drift, Page's two-sided CUSUM: z = clip((x − m) / (s·√((1+φ)/(1−φ))), ±`clip`)
  (the inflation makes a sum of correlated hours vary as one of independent ones; a
  single plume hour cannot raise more than `clip`), S⁺ = max(0, S⁺ + z − k),
  S⁻ = max(0, S⁻ − z − k), flagged when either exceeds h = `threshold` (against a
  reference station `reference_threshold`, lower: see DriftConfig). The allowance
  k is `allowance` standard deviations but never less than `min_drift` in log ratio:
  a change of a few per cent is within what calibration and siting explain, and a quiet
  comparator must not turn it into a flag. `onset` is the last hour the statistic was
  zero before it crossed;
* sudden steps, a change point with an unknown onset: for every onset in the last
  `step_hours` paired hours, the median of (x − m)/s since it, beyond `step_threshold`
  standard deviations of such a window's median (the larger of what φ implies and the
  spread of those windows over the baseline) and at least `step_min_change` in log ratio,
  flags at once (`test` = "step"; onset = the window's first hour);
* a gain decaying, a linear trend from an unknown onset within the last `trend_hours`:
  its generalised likelihood ratio beyond `trend_threshold` with a fitted change of at
  least `trend_min_change` (`test` = "trend"; onset = the fitted one);
* a baseline level already off by more than `level_threshold` (the box was off before the
  look-back began) is flagged at the end of the baseline (`test` = "level").

Statuses: `drift` (flagged), `ok` (compared, not flagged), `insufficient_data` (no
comparator, or fewer than `min_baseline_fraction` of the baseline hours paired: the device
cannot be checked and needs a visit or a co-location). docs/calibration.md gives the
detection delays and the false-alarm rate the defaults imply, measured by
`python -m devtools.drift_study` (tests/calibration/test_drift_cusum.py checks a few seeds).
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
    """Thresholds of the tests (see the module docstring); docs/calibration.md gives their false-alarm rate.

    The defaults were set by simulation (`python -m devtools.drift_study`): no false flag in
    the study's healthy fleets (neighbours, a box alone at a reference, the boxes together at
    it: 30 seeds of 60 days each) nor on the
    demo city's healthy boxes over 60 days nor in any of 69 14-day windows of it (the demo's
    look-back). The largest healthy statistics are the margins: CUSUM 11.7 in a demo window
    (a box reading 4 % high for a few days), hence `threshold` 14; step 8.5 in a demo window,
    hence `step_threshold` 10 (9 gives the same delays in the study); trend 7.6 in the study's reference fleet
    with a constant level (6.7 with the gain-shaped one, 9.3 over 120 further seeds), hence
    `trend_threshold` 8 (7 and 7 flag a demo box). `allowance` 1 is what
    the demo city's 7 % hourly noise needs once the baseline week's own estimation error is
    counted. `reference_threshold` 12: the demo city (neighbours) sets `threshold`, but a
    reference comparison's noise is the station's own, white, 1 µg/m³ an hour, so a 30 % step
    in 9-15 µg/m³ air is 2-3 standard deviations an hour and the CUSUM is what flags it; at
    14 it needed up to 19 h in ordinary air, at 12 it needs 12. The largest healthy CUSUM
    against a reference is 8.8 in the study and 10.8 in 120 further seeds (30-149) with the
    gain-shaped level (14.3 with a constant one, which h = 12 could not take).
    """

    neighbour_radius_km: float = 3.0
    colocated_km: float = 0.1
    min_neighbours: int = 2
    baseline_hours: int = 168
    max_correlation: float = 0.9
    min_baseline_fraction: float = 0.5
    floor_ugm3: float = 3.0
    reference_floor_ugm3: float = 10.0
    min_scale: float = 0.02
    allowance: float = 1.0
    threshold: float = 14.0
    reference_threshold: float = 12.0
    clip: float = 4.0
    level_threshold: float = 0.25
    min_drift: float = 0.04
    step_hours: int = 48
    step_threshold: float = 10.0
    step_min_change: float = 0.1
    trend_hours: int = 96
    trend_threshold: float = 8.0
    trend_min_change: float = 0.08
    # at a reference station, the neighbours' scan gives a verdict only if the box's baseline ratio to
    # them is within this share of 1: the study's healthy boxes at the station stay within 0.091 (150
    # seeds); with the seven others reading 12-20 % low together, the neighbours' scan alone flagged
    # the eighth box, which agrees with the station, in 1-4 of 8 seeds (level, trend, CUSUM); with
    # this bound in none of 8 for 8-35 % high or 12-20 % low
    neighbour_agreement: float = 0.15

    def check(self) -> None:
        """ValueError naming the first setting that cannot work (the TUNABLES bounds, then the others)."""
        for tunable in TUNABLES:
            tunable.check(getattr(self, tunable.field))
        if not 0 <= self.max_correlation < 1:
            raise ValueError(f"max_correlation must be in [0, 1), got {self.max_correlation}")
        if not 0 < self.min_baseline_fraction <= 1:
            raise ValueError(f"min_baseline_fraction must be in (0, 1], got {self.min_baseline_fraction}")
        if self.neighbour_agreement < 0:
            raise ValueError(f"neighbour_agreement must be >= 0, got {self.neighbour_agreement}")
        if self.clip <= 0:
            raise ValueError(f"clip must be positive, got {self.clip}")

    def cusum_threshold(self, reference: bool) -> float:
        """The CUSUM's h: `reference_threshold` against a reference station, else `threshold`."""
        return self.reference_threshold if reference else self.threshold


@dataclass(frozen=True)
class Tunable:
    """A DriftConfig setting a deployment may change: `citysense calibrate drift --<name>` and the admin
    API's `?<name>=` (both built from TUNABLES, so they cannot disagree), with its meaning and bounds."""

    field: str  # the DriftConfig field
    name: str  # the CLI option (with dashes) and the API parameter
    help: str
    minimum: float
    maximum: float
    open_below: bool = False  # the minimum itself is refused

    @property
    def kind(self) -> type:
        """int or float, as the DriftConfig field."""
        return type(getattr(DriftConfig, self.field))

    @property
    def default(self) -> float:
        return float(getattr(DriftConfig, self.field))

    def check(self, value: float) -> None:
        """ValueError naming the setting if `value` is out of its bounds."""
        low = value > self.minimum if self.open_below else value >= self.minimum
        if not (low and value <= self.maximum):
            lower = f"> {self.minimum:g}" if self.open_below else f">= {self.minimum:g}"
            raise ValueError(f"{self.name} must be {lower} and <= {self.maximum:g}, got {value:g}")


TUNABLES: tuple[Tunable, ...] = (
    Tunable("neighbour_radius_km", "radius_km", "Neighbour radius, km", 0, 100, open_below=True),
    Tunable("baseline_hours", "baseline_hours", "Paired hours that set each device's own level and noise", 24,
            24 * 366),
    Tunable("floor_ugm3", "floor", "µg/m³ added to both sides of the log ratio", 0, 1000, open_below=True),
    Tunable("reference_floor_ugm3", "reference_floor", "The same, against a reference station", 0, 1000,
            open_below=True),
    Tunable("min_scale", "min_scale", "Smallest hourly log-ratio standard deviation", 0, 10, open_below=True),
    Tunable("allowance", "allowance", "CUSUM k, standard deviations", 0, 100),
    Tunable("threshold", "threshold", "CUSUM h, standard deviations", 0, 10_000, open_below=True),
    Tunable("reference_threshold", "reference_threshold", "The same, against a reference station", 0, 10_000,
            open_below=True),
    Tunable("min_drift", "min_drift", "Smallest log-ratio change the CUSUM accumulates", 0, 10),
    Tunable("step_hours", "step_hours", "Step test: longest window after the onset, paired hours", 2, 24 * 31),
    Tunable("step_threshold", "step_threshold", "Step test: window median beyond this many window sd", 0, 10_000,
            open_below=True),
    Tunable("step_min_change", "step_min_change", "Step test: smallest log-ratio change", 0, 10),
    Tunable("trend_hours", "trend_hours", "Trend test: longest window after the onset, paired hours", 12, 24 * 31),
    Tunable("trend_threshold", "trend_threshold", "Trend test: fitted trend beyond this many sd", 0, 10_000,
            open_below=True),
    Tunable("trend_min_change", "trend_min_change", "Trend test: smallest fitted log-ratio change", 0, 10),
    Tunable("level_threshold", "level_threshold", "Baseline ratio off by more than this share is drift", 0, 10,
            open_below=True),
)


def config_from(values: dict[str, float]) -> DriftConfig:
    """The DriftConfig of TUNABLES values by their `name` (the CLI's and the API's), checked; ValueError if not."""
    config = DriftConfig(**{t.field: t.kind(values[t.name]) for t in TUNABLES if t.name in values})
    config.check()
    return config


@dataclass(frozen=True)
class DriftFinding:
    """The verdict for one device.

    `flagged_at` is the hour a test flagged the device, `onset` its estimate of when the
    change began, `test` which test it was (`cusum`, `step` or `level`); `ratio`/`diff` are
    the median device/comparator ratio and difference over the last 24 paired hours;
    `baseline_ratio` the level the baseline set; `scale` the hourly log-ratio standard
    deviation at the baseline's median concentration; `statistic` the largest CUSUM value
    reached (in standard deviations); `direction` is `up` or `down` for a flagged device;
    `hours` the paired hours examined.
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
    step_statistic: float = 0.0
    trend_statistic: float = 0.0
    direction: str | None = None
    test: str | None = None  # "cusum", "step" or "level" for a flagged device

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
            "test": self.test,
            "ratio": number(self.ratio, 4),
            "diff": number(self.diff, 2),
            "baseline_ratio": number(self.baseline_ratio, 4),
            "scale": number(self.scale, 4),
            "statistic": number(self.statistic, 2),
            "step_statistic": number(self.step_statistic, 2),
            "trend_statistic": number(self.trend_statistic, 2),
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


def _comparators(
    device: Site, sites: list[Site], matrix: dict[str, FloatArray], cfg: DriftConfig
) -> list[tuple[str, FloatArray | None]]:
    """The device's comparators, best first: a reference station within `colocated_km`, then the median of
    its neighbours within `neighbour_radius_km` (other boxes only when a reference stands beside it).

    A box at a reference station is scanned against both (see `_check_all`): the station is the truth,
    but its own hourly noise is white and, in clean air, as large as a gain change's signal, where the
    boxes beside it share that air and each other's noise is a few per cent."""
    references = [
        (distance_km(device.lat, device.lon, s.lat, s.lon), s) for s in sites if s.is_reference
    ]
    colocated = sorted((d, s.site_id) for d, s in references if d <= cfg.colocated_km)
    found: list[tuple[str, FloatArray | None]] = []
    if colocated:
        ref_id = colocated[0][1]
        found.append((f"reference:{ref_id}", matrix[ref_id]))
    neighbours = [
        s.site_id
        for s in sites
        if s.site_id != device.site_id
        and not (colocated and s.is_reference)
        and distance_km(device.lat, device.lon, s.lat, s.lon) <= cfg.neighbour_radius_km
    ]
    if len(neighbours) < cfg.min_neighbours:
        return found or [(f"neighbours:{len(neighbours)}", None)]
    stack = np.vstack([matrix[n] for n in neighbours])
    counts = np.isfinite(stack).sum(axis=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pooled = np.nanmedian(stack, axis=0)
    median = np.where(counts >= cfg.min_neighbours, pooled, np.nan)
    return [*found, (f"neighbours:{len(neighbours)}", median)]


def _recent(own: FloatArray, other: FloatArray, both: np.ndarray) -> tuple[float, float]:
    """Median ratio and difference over the last 24 paired hours."""
    idx = np.flatnonzero(both)[-24:]
    if idx.size == 0:
        return math.nan, math.nan
    a, b = own[idx], other[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(a / b)) if bool(np.all(b > 0)) else float(a.sum() / max(b.sum(), 1e-9))
    return ratio, float(np.median(a - b))


@dataclass(frozen=True)
class Baseline:
    """The device's own level, and its noise as a function of the comparator's concentration.

    Level: `level` (the median log ratio) against neighbours; against a reference station
    (`floor` set) a gain error `gain`, so the expected log ratio at concentration c is
    log(((1 + gain)·c + floor)/(c + floor)) (see the module docstring).

    Noise: the log ratio of an hour at comparator concentration c varies as
    s(c)² = a + b / (c + floor)²: a relative part (local air, the sensors' gain noise) and
    an additive part in µg/m³ (sensor and reference noise) that dominates in clean air. The
    shape (a, b ≥ 0) is a least-squares fit of the squared residuals (clipped at 4 MADs);
    its size is then set so that the residuals' MAD, in units of s, is one (robust to plume
    hours). Clean-air hours so weigh what they are worth: they neither raise the statistic
    by their noise nor hide a change behind one scale set by the noisiest hours. `phi` is
    the lag-1 correlation of the standardised residuals.
    """

    level: float  # median log ratio of the baseline hours
    relative: float  # a of s(c)²
    additive: float  # b of s(c)², (µg/m³)²
    phi: float
    gain: float = 0.0  # against a reference: the box's gain error, a share
    floor: float = 0.0  # against a reference: its floor (µg/m³); 0: the level is `level` at every c

    def expected(self, at: FloatArray) -> FloatArray:
        """The baseline's log ratio at log(c + floor) = `at`: what a healthy hour shows."""
        if not self.floor:
            return np.full(np.shape(at), self.level)
        return _gain_log_ratio(_concentration(at, self.floor), self.gain, self.floor)

    def scale(self, at: FloatArray, min_scale: float) -> FloatArray:
        """The hourly standard deviation of the log ratio at log(c + floor) = `at`, at least `min_scale`."""
        return np.maximum(min_scale, np.sqrt(self.relative + self.additive * np.exp(-2.0 * at)))

    @property
    def inflation(self) -> float:
        """How much more a sum of n hours varies than n independent ones: √((1 + φ)/(1 − φ)) for an AR(1)."""
        return math.sqrt((1 + self.phi) / (1 - self.phi))

    def window_sd(self, hours: int) -> float:
        """Standard deviation of the mean of `hours` consecutive standardised hours (AR(1) of lag-1 `phi`)."""
        lags = np.arange(1, hours)
        total = hours + 2.0 * float(np.sum((hours - lags) * self.phi**lags))
        return math.sqrt(total) / hours


def _lag_one_correlation(residuals: FloatArray, cfg: DriftConfig) -> float:
    """Lag-1 correlation of standardised residuals (NaN where an hour is missing), in [0, `max_correlation`]."""
    pairs = np.isfinite(residuals[1:]) & np.isfinite(residuals[:-1])
    if int(pairs.sum()) < 8:
        return 0.0
    a, b = residuals[1:][pairs], residuals[:-1][pairs]
    denominator = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    phi = float(np.sum(a * b)) / denominator if denominator > 0 else 0.0
    return min(max(phi, 0.0), cfg.max_correlation)


def _noise_shape(residuals: FloatArray, at: FloatArray) -> tuple[float, float]:
    """(a, b) of s² = a + b·exp(−2·at), least squares on squared residuals clipped at 4 MADs, a, b ≥ 0."""
    mad = MAD_TO_SIGMA * float(np.median(np.abs(residuals)))
    q = np.minimum(residuals**2, (4.0 * mad) ** 2)
    w = np.exp(-2.0 * at)
    design = np.column_stack([np.ones_like(w), w])
    (a, b), *_ = np.linalg.lstsq(design, q, rcond=None)
    if b < 0 or a < 0:  # one term alone explains the spread better than both
        only_a = float(np.mean(q))
        only_b = float(np.sum(q * w) / max(float(np.sum(w * w)), 1e-300))
        if float(np.sum((q - only_a) ** 2)) <= float(np.sum((q - only_b * w) ** 2)):
            return only_a, 0.0
        return 0.0, only_b
    return float(a), float(b)


def _concentration(at: FloatArray, floor: float) -> FloatArray:
    """The comparator's concentration c from `at` = log(c + floor)."""
    return np.maximum(np.exp(at) - floor, 0.0)


def _gain_log_ratio(c: FloatArray, gain: float, floor: float) -> FloatArray:
    """The log ratio a box with this gain error shows against a comparator reading c, under `floor`."""
    return np.asarray(np.log(((1.0 + gain) * c + floor) / (c + floor)), dtype=np.float64)


def _gain_error(x: FloatArray, at: FloatArray, floor: float) -> float:
    """The gain error e whose expected log ratios (`Baseline.expected`) leave the residuals of `x`
    a median of zero: bisection, as the median residual falls as e grows."""
    c = _concentration(at, floor)
    low, high = -0.9, 3.0
    for _ in range(50):
        middle = (low + high) / 2
        residual = float(np.median(x - _gain_log_ratio(c, middle, floor)))
        low, high = (middle, high) if residual > 0 else (low, middle)
    return (low + high) / 2


def _baseline(x: FloatArray, at: FloatArray, cfg: DriftConfig, floor: float = 0.0) -> Baseline:
    """The `Baseline` of the hours `x` (log ratios, NaN where unpaired) at comparator levels `at`;
    with a `floor` (against a reference) its level is a gain error's."""
    finite = np.flatnonzero(np.isfinite(x))
    level = float(np.median(x[finite]))
    gain = _gain_error(x[finite], at[finite], floor) if floor else 0.0
    residuals = x[finite] - Baseline(level, 0.0, 0.0, 0.0, gain, floor).expected(at[finite])
    a, b = _noise_shape(residuals, at[finite])
    shape = np.sqrt(np.maximum(a + b * np.exp(-2.0 * at[finite]), 1e-300))
    size = MAD_TO_SIGMA * float(np.median(np.abs(residuals / shape)))
    relative, additive = a * size**2, b * size**2
    standardised = np.full(x.shape, np.nan)
    standardised[finite] = residuals / np.maximum(
        cfg.min_scale, np.sqrt(relative + additive * np.exp(-2.0 * at[finite]))
    )
    return Baseline(level, relative, additive, phi=_lag_one_correlation(standardised, cfg), gain=gain, floor=floor)


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
    reference = comparator.startswith("reference:")
    floor = cfg.reference_floor_ugm3 if reference else cfg.floor_ugm3
    with np.errstate(invalid="ignore"):
        x = np.log((np.clip(own, 0, None) + floor) / (np.clip(other, 0, None) + floor))
        at = np.log(np.clip(other, 0, None) + floor)
    base = _baseline(x[first:base_end], at[first:base_end], cfg, floor if reference else 0.0)
    typical = float(base.scale(np.array([float(np.median(at[baseline]))]), cfg.min_scale)[0])
    found = DriftFinding(
        device_id, "ok", comparator, None, ratio, diff, int(paired.size),
        baseline_ratio=math.exp(base.level), scale=typical,
    )
    if abs(math.exp(base.level) - 1.0) > cfg.level_threshold:
        at_end = grid[min(base_end, grid.size) - 1]
        direction = "up" if base.level > 0 else "down"
        return replace(found, status="drift", flagged_at=at_end, onset=grid[first], direction=direction, test="level")
    shift = x[paired] - base.expected(at[paired])
    scale = base.scale(at[paired], cfg.min_scale)
    z = shift / scale
    effective = scale * base.inflation
    allowance = np.maximum(cfg.allowance, cfg.min_drift / effective)
    cusum = _first_cusum_crossing(
        paired, np.clip(shift / effective, -cfg.clip, cfg.clip), allowance, base_end, cfg.cusum_threshold(reference)
    )
    step, trend, peaks = _first_change(paired, z, scale, base, base_end, cfg)
    peak = cusum.peak
    candidates = [(c.hour, c.onset, c.direction, name) for name, c in (("step", step), ("trend", trend)) if c]
    if cusum.hour is not None and cusum.direction is not None:
        candidates.append((cusum.hour, min(cusum.onset + 1, cusum.hour), cusum.direction, "cusum"))
    if candidates:
        hour, onset, direction, test = min(candidates, key=lambda c: c[0])
        return replace(
            found, status="drift", flagged_at=grid[hour], onset=grid[onset], statistic=peak,
            step_statistic=peaks["step"], trend_statistic=peaks["trend"], direction=direction, test=test,
        )
    return replace(found, statistic=peak, step_statistic=peaks["step"], trend_statistic=peaks["trend"])


@dataclass(frozen=True)
class _Crossing:
    """Where Page's CUSUM first crossed its threshold after the baseline (hour None: never), and its peak."""

    hour: int | None
    onset: int
    direction: str | None
    peak: float


def _first_cusum_crossing(
    hours: np.ndarray, z: FloatArray, allowance: FloatArray, base_end: int, threshold: float
) -> _Crossing:
    """Two-sided CUSUM of `z` less `allowance` (one of each per paired hour `hours`), flagged above
    `threshold`; onset is the last hour its side was zero."""
    up = down = peak = 0.0
    up_zero = down_zero = int(hours[0])
    for hour, value, k in zip(hours.tolist(), z.tolist(), allowance.tolist(), strict=True):
        up = max(0.0, up + value - k)
        down = max(0.0, down - value - k)
        if up == 0.0:
            up_zero = hour
        if down == 0.0:
            down_zero = hour
        peak = max(peak, up, down)
        if hour >= base_end and (up > threshold or down > threshold):
            direction, zero = ("up", up_zero) if up > threshold else ("down", down_zero)
            return _Crossing(hour, zero, direction, peak)
    return _Crossing(None, int(hours[0]), None, peak)


@dataclass(frozen=True)
class _Change:
    """A change-point test's first flag: the flagged hour, the estimated onset, direction and statistic."""

    hour: int
    onset: int
    direction: str
    statistic: float


class _Prefix:
    """Prefix sums over the paired hours, so the sum over the last n paired hours ending at each hour is
    two subtractions (every window length costs one vector operation)."""

    def __init__(self, values: FloatArray) -> None:
        self._sums = np.concatenate([[0.0], np.cumsum(values)])

    def window(self, n: int) -> FloatArray:
        """Sums over the windows of n consecutive paired hours, one per window's last hour (index n-1 on)."""
        return np.asarray(self._sums[n:] - self._sums[:-n], dtype=np.float64)


def _window_lengths(shortest: int, longest: int) -> list[int]:
    """Window lengths from `shortest` to `longest` paired hours, each at most a third longer than the one
    before: onsets between two of them are found one window later (a quarter of its age at most), and the
    test costs a few dozen vector operations however long the windows."""
    lengths, n = [], shortest
    while n <= longest:
        lengths.append(n)
        n = max(n + 1, math.floor(n * 4 / 3))
    return lengths


def _first_change(
    hours: np.ndarray, z: FloatArray, scale: FloatArray, base: Baseline, base_end: int, cfg: DriftConfig
) -> tuple[_Change | None, _Change | None, dict[str, float]]:
    """The first flag of each change-point test after the baseline, (step, trend), None if it never
    flags, and the largest statistic each reached in a window whose change was large enough (the margin).

    Both try every onset within the last `step_hours` (step) or `trend_hours` (trend) paired
    hours, by windows each at most a third longer than the one before (`_window_lengths`):

    * step, a level shift from the onset on: the median of the standardised hours since the
      onset, in standard deviations of such a median (the larger of what the baseline's φ
      implies and the spread of the same windows' medians over the baseline: boxes that part
      from their neighbours for half a day, as the demo city's do, raise it for long windows
      only), beyond `step_threshold`, with the median shift of the log ratio at least
      `step_min_change`. A large step is seen in one or two hours, a smaller one (a gain step in
      clean air) by a longer window; one fixed window is too short for the one or waits too long
      for the other. A median is not moved by one or two plume hours;
    * trend, a log ratio moving linearly away from the onset on (a gain decaying by a share a
      day), a generalised likelihood-ratio test: the projection of the standardised hours,
      clipped at ±`clip` (one plume hour moves it by at most that), on the hours since the
      onset, in standard deviations (the long-run inflation √((1+φ)/(1−φ))), beyond
      `trend_threshold`, with the fitted change at the last hour at least `trend_min_change`.

    A window may span at most twice its paired hours in clock hours (a gap does not join two days).
    """
    e = np.clip(z, -cfg.clip, cfg.clip)
    clipped_shift = e * scale
    u = (hours - hours[0]).astype(np.float64)
    sums = {name: _Prefix(values) for name, values in {
        "e": e, "ue": u * e, "u": u, "uu": u * u, "s": clipped_shift, "us": u * clipped_shift,
    }.items()}
    after = hours >= base_end
    in_baseline = int(np.count_nonzero(~after))

    peaks = {"step": 0.0, "trend": 0.0}

    def first(test: str, statistic: FloatArray, change: FloatArray, n: int, threshold: float, min_change: float,
              onset: np.ndarray) -> list[_Change]:
        last = np.arange(n - 1, hours.size)
        span = hours[last] - hours[last - n + 1]
        eligible = (np.abs(change) >= min_change) & (span < 2 * n) & after[last]
        if bool(eligible.any()):
            peaks[test] = max(peaks[test], float(np.max(np.abs(statistic[eligible]))))
        found = np.flatnonzero(eligible & (np.abs(statistic) > threshold))
        if found.size == 0:
            return []
        i = int(found[0])
        return [_Change(int(hours[last[i]]), int(onset[i]), "up" if statistic[i] > 0 else "down",
                        abs(float(statistic[i])))]

    steps: list[_Change] = []
    windows = np.lib.stride_tricks.sliding_window_view
    shift = z * scale  # unclipped: a step's size is the median of what the hours moved
    for n in _window_lengths(2, min(cfg.step_hours, hours.size)):
        median_z = np.median(windows(z, n), axis=1)
        median_shift = np.median(windows(shift, n), axis=1)
        in_base = median_z[: max(0, in_baseline - n + 1)]
        spread = MAD_TO_SIGMA * float(np.median(np.abs(in_base - np.median(in_base)))) if in_base.size >= 2 * n else 0.0
        steps += first("step", median_z / max(base.window_sd(n), spread), median_shift, n, cfg.step_threshold,
                       cfg.step_min_change, hours[: hours.size - n + 1])
    trends: list[_Change] = []
    for n in _window_lengths(12, min(cfg.trend_hours, hours.size)):
        # onset tau: the hour before the window's first; regressor v = u - tau (hours since onset)
        tau = u[: u.size - n + 1] - 1.0
        sum_ve = sums["ue"].window(n) - tau * sums["e"].window(n)
        sum_vv = sums["uu"].window(n) - 2.0 * tau * sums["u"].window(n) + n * tau**2
        sum_vs = sums["us"].window(n) - tau * sums["s"].window(n)
        statistic = sum_ve / (np.sqrt(sum_vv) * base.inflation)
        change = sum_vs / sum_vv * (u[n - 1 :] - tau)
        trends += first("trend", statistic, change, n, cfg.trend_threshold, cfg.trend_min_change,
                        hours[: hours.size - n + 1])

    def earliest(found: list[_Change]) -> _Change | None:
        return min(found, key=lambda c: (c.hour, -c.statistic)) if found else None

    return earliest(steps), earliest(trends), peaks


MAX_EXCLUSION_ROUNDS = 4


def _verdict(scans: list[DriftFinding], cfg: DriftConfig) -> DriftFinding:
    """One finding from a device's scans (best comparator first): the earliest flag, else the best
    comparator's own verdict if it could check the device, else the first that could.

    Where a reference station could check the device, a neighbours' scan takes part only if the
    device's baseline ratio to its neighbours is within `neighbour_agreement` of 1 (see the module
    docstring: neighbours sharing a bias are no evidence against the station)."""
    if len(scans) > 1 and scans[0].comparator.startswith("reference:") and scans[0].status != "insufficient_data":
        scans = [scans[0], *(f for f in scans[1:] if abs(f.baseline_ratio - 1.0) <= cfg.neighbour_agreement)]
    flagged = [(f.flagged_at, k) for k, f in enumerate(scans) if f.status == "drift" and f.flagged_at is not None]
    if flagged:
        return scans[min(flagged)[1]]
    checked = [f for f in scans if f.status == "ok"]
    return checked[0] if checked else scans[0]


def detect_drift(sites: list[Site], config: DriftConfig | None = None) -> list[DriftFinding]:
    """One finding per non-reference site, in input order.

    A drifting box is no comparator for its neighbours: one box losing half its gain pulls
    the median of a small neighbourhood down and makes its healthy neighbours look as if
    they read high. So the fleet is checked again with the boxes found drifting left out
    of every other box's neighbours (each box is still compared with all the others it
    had), until the set of drifting boxes stays the same (at most MAX_EXCLUSION_ROUNDS
    rounds; the last round's findings are returned).
    """
    cfg = config or DriftConfig()
    cfg.check()
    grid = _grid(sites)
    matrix = {s.site_id: _on_grid(s.series, grid) for s in sites} if grid.size else {}
    excluded: frozenset[str] = frozenset()
    findings = _check_all(sites, matrix, grid, cfg, excluded)
    for _ in range(MAX_EXCLUSION_ROUNDS - 1):
        drifting = frozenset(f.device_id for f in findings if f.status == "drift")
        if drifting == excluded:
            break
        excluded = drifting
        findings = _check_all(sites, matrix, grid, cfg, excluded)
    return findings


def _check_all(
    sites: list[Site], matrix: dict[str, FloatArray], grid: TimeArray, cfg: DriftConfig, excluded: frozenset[str]
) -> list[DriftFinding]:
    """One finding per non-reference site, with the `excluded` boxes left out of the others' neighbours."""
    findings = []
    for device in sites:
        if device.is_reference:
            continue
        candidates = [s for s in sites if s.site_id == device.site_id or s.site_id not in excluded]
        compared = _comparators(device, candidates, matrix, cfg) if grid.size else [("none", None)]
        scans = [
            _scan(device.site_id, comparator, matrix[device.site_id], other, grid=grid, cfg=cfg)
            for comparator, other in compared
            if other is not None
        ]
        if not scans:
            findings.append(DriftFinding(device.site_id, "insufficient_data", compared[0][0], None, math.nan,
                                         math.nan, 0))
            continue
        findings.append(_verdict(scans, cfg))
    return findings
