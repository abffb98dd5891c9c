"""Checks shared by every codec: clocks and metric values, each failing with a reason."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from contracts.flags import Flag
from contracts.limits import MAX_READING_AGE_S
from contracts.metrics import METRIC_NAME, METRIC_NAME_MAX, METRICS, SENTINELS
from contracts.records import DecodeError, ReadingRow

MAX_FUTURE_S = 600.0  # device clocks may run a little fast
EARLIEST_PLAUSIBLE_TS = 1_577_836_800.0  # 2020-01-01: earlier means an unset RTC (MicroPython boots at 2000)



def resolve_time(ts: object, received_at: float) -> tuple[float, int]:
    """The time to store and the clock flags: untrusted clocks fall back to receive time.

    Hot path (every message): a plain number inside the plausible window returns at once; NaN,
    infinities, bools, milliseconds and everything else fail that test and take the checks below.
    """
    kind = type(ts)
    if (kind is int or kind is float) and (
        EARLIEST_PLAUSIBLE_TS <= ts <= received_at + MAX_FUTURE_S and ts >= received_at - MAX_READING_AGE_S  # type: ignore[operator]
    ):
        return float(ts), 0  # type: ignore[arg-type]
    if ts is None or ts == 0:
        return float(int(received_at)), int(Flag.NO_CLOCK)
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise DecodeError(f"ts must be Unix seconds (a number), got {type(ts).__name__}")
    if not math.isfinite(ts) or ts < 0:
        raise DecodeError(f"ts must be a non-negative finite number, got {ts!r}")
    value = float(ts)
    if value > 1e11:  # milliseconds sent by mistake: recognisable, not guessable beyond that
        raise DecodeError(f"ts {ts!r} looks like milliseconds; send Unix seconds")
    if value < EARLIEST_PLAUSIBLE_TS or value > received_at + MAX_FUTURE_S or value < received_at - MAX_READING_AGE_S:
        return float(int(received_at)), int(Flag.CLOCK_SKEW)
    return value, 0


EARLIEST_HISTORY_TS = 631_152_000.0  # 1990-01-01: older than any PM sensor network; earlier is a unit error
_HISTORY_MS_FROM = 1e11  # a history time above this is milliseconds (year 5138 in seconds)
_IMPORTED = int(Flag.IMPORTED)


def resolve_history_time(ts: float, now: float) -> tuple[float, int]:
    """The time of an imported (history) reading and its flag: any age is accepted and flagged
    IMPORTED; what no clock can mean (non-finite, milliseconds, before 1990, in the future) is
    refused. The live rule (`resolve_time`: CLOCK_SKEW beyond MAX_READING_AGE_S) stays for live data."""
    if not math.isfinite(ts):
        raise DecodeError(f"time {ts!r} is not finite")
    if ts > _HISTORY_MS_FROM:
        raise DecodeError(f"time {ts!r} looks like milliseconds; give Unix seconds or ISO 8601")
    if ts < EARLIEST_HISTORY_TS:
        raise DecodeError(f"time {ts!r} is before 1990; not a reading of this network")
    if ts > now + MAX_FUTURE_S:
        raise DecodeError(f"time {ts!r} is in the future")
    return ts, _IMPORTED


_UNKNOWN_METRIC = int(Flag.UNKNOWN_METRIC)
_SENTINEL = int(Flag.SENTINEL)
_RH_OVER_100 = int(Flag.RH_OVER_100)
_OUT_OF_RANGE = int(Flag.OUT_OF_RANGE)
_NUMBER = (int, float)
# (low, high) of each registry metric: the in-range test of `metric_value`, read by both its
# forms (one value, and a whole `m` in `measurement_rows`)
_RANGES: dict[str, tuple[float, float]] = {name: (spec.low, spec.high) for name, spec in METRICS.items()}


def metric_value(name: object, value: object) -> tuple[str, float, float | None, int]:
    """(metric, raw, value-to-calibrate-or-None, flags) for one entry of `m`.

    Hot path: registry names skip the name pattern, which every registry name matches; flags
    are plain ints. Whole messages take `measurement_rows`, which runs the first test inline.
    """
    if type(value) is float or type(value) is int:  # the common case: a plain in-range number
        bounds = _RANGES.get(name) if type(name) is str else None
        if bounds is not None:
            raw = float(value)
            if bounds[0] <= raw <= bounds[1]:  # False for NaN and infinities: the checks below
                return name, raw, raw, 0  # type: ignore[return-value]
    spec = METRICS.get(name) if isinstance(name, str) else None
    if spec is None and (not isinstance(name, str) or not METRIC_NAME.match(name)):
        raise DecodeError(f"metric name {str(name)[:40]!r} is not a lowercase identifier of <= {METRIC_NAME_MAX}")
    assert isinstance(name, str)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, _NUMBER):
        raise DecodeError(f"metric {name!r} must be a number, got {type(value).__name__}")
    raw = float(value)
    if not math.isfinite(raw):
        raise DecodeError(f"metric {name!r} is not finite ({value!r})")
    if spec is None:
        return name, raw, None, _UNKNOWN_METRIC
    if spec.low <= raw <= spec.high:
        return name, raw, raw, 0
    if raw in SENTINELS:
        return name, raw, None, _SENTINEL
    flags = _OUT_OF_RANGE
    if name == "rh" and raw > 100.0:
        flags |= _RH_OVER_100
    return name, raw, raw, flags


def measurement_rows(device_id: str, ts: float, measurements: Mapping[str, object], flags: int) -> list[ReadingRow]:
    """The reading rows of one entry's `m` at `ts`, each metric judged by `metric_value`, with
    `flags` (the entry's clock and replay bits) added to every row.

    Hot path (every reading): the common case of `metric_value` (a registry metric holding a
    plain in-range number, on the same `_RANGES`) is tested here without a call; every other
    entry goes through `metric_value`. tests/gateway/test_validation_forms.py proves both give
    the same rows on random entries."""
    rows: list[ReadingRow] = []
    append = rows.append
    ranges = _RANGES
    for name, value in measurements.items():
        kind = type(value)
        if kind is float or kind is int:
            bounds = ranges.get(name)
            if bounds is not None:
                raw = value if kind is float else float(value)  # type: ignore[arg-type]
                if bounds[0] <= raw <= bounds[1]:  # type: ignore[operator]
                    append((ts, device_id, name, raw, raw, flags, None))  # type: ignore[arg-type]
                    continue
        metric, raw, calibrate, metric_flags = metric_value(name, value)
        append((ts, device_id, metric, raw, calibrate, metric_flags | flags, None))
    return rows


def plain_history_times(ts: npt.NDArray[np.float64], now: float) -> npt.NDArray[np.bool_]:
    """Which times `resolve_history_time(t, now)` returns as (t, IMPORTED): the same tests on a
    whole column (the importer's); the others take the scalar function for their reason."""
    with np.errstate(invalid="ignore"):
        return (ts >= EARLIEST_HISTORY_TS) & (ts <= _HISTORY_MS_FROM) & (ts <= now + MAX_FUTURE_S)  # NaN: False


def plain_metric_values(names: Sequence[str], raws: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Which (name, raw) pairs `metric_value(name, raw)` returns as (name, raw, raw, 0), its fast
    path (a registry metric, in range), on whole columns (the importer's); the others take the
    scalar function for their flags or refusal."""
    distinct = set(names)
    no_range = (math.inf, -math.inf)  # not a registry metric: never the fast path
    low = {n: _RANGES.get(n, no_range)[0] for n in distinct}
    high = {n: _RANGES.get(n, no_range)[1] for n in distinct}
    lows = np.fromiter(map(low.__getitem__, names), dtype=np.float64, count=len(names))
    highs = np.fromiter(map(high.__getitem__, names), dtype=np.float64, count=len(names))
    with np.errstate(invalid="ignore"):
        return (raws >= lows) & (raws <= highs)  # NaN and infinities outside
