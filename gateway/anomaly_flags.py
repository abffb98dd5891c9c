"""Quality flags judged against a series' recent readings: stuck sensors and spikes.

The rule is `flag_run`, a pure function over one (device, metric) series in time order.
It runs inside the batch writer's transaction (ingest.series_windows), against the
series' window stored in the database, so the flags a reading gets do not depend on
which gateway replica read it, on restarts or on retries; the gateway hands the rule to
the writer as `STUCK_SPIKE_RULE`.
"""

from __future__ import annotations

from contracts.flags import Flag
from ingest.series_windows import SeriesRule, SeriesWindow

STUCK_REPEATS = 20
WINDOW = 9
MIN_HISTORY = 5
SPIKE_MADS = 6.0 * 1.4826  # robust z-score threshold: 6 scaled median absolute deviations
# Absolute floor under which a jump is never called a spike, per metric (registry units).
SPIKE_FLOOR = {"pm1": 50.0, "pm25": 50.0, "pm10": 80.0, "t": 8.0, "rh": 25.0, "p": 15.0, "co2": 800.0}
EXEMPT = frozenset({"occupied", "batt_mv", "rssi"})
# readings without a value to judge (a sentinel, an unknown metric) neither get nor feed these flags
NO_WINDOW = int(Flag.SENTINEL | Flag.UNKNOWN_METRIC)
_STUCK = int(Flag.STUCK)  # plain ints: enum arithmetic costs ~1 µs per operation on the hot path
_SPIKE = int(Flag.SPIKE)
_REPEATS_CAP = STUCK_REPEATS - 1  # more repeats flag nothing more; capped, the window stays bounded


def _median(values: list[float]) -> float:
    """Median of an already sorted list."""
    n = len(values)
    half = n // 2
    return values[half] if n % 2 else (values[half - 1] + values[half]) / 2.0


def flag_run(window: SeriesWindow, metric: str, raws: list[float]) -> list[int]:
    """STUCK/SPIKE bits of each raw value of `raws` (consecutive readings of one series, in
    time order, following `window`), advancing `window` past them.

    STUCK: the same non-zero value as the STUCK_REPEATS - 1 readings before it. SPIKE: with
    at least MIN_HISTORY readings in the window, farther from their median than both the
    metric's floor and SPIKE_MADS scaled median absolute deviations. Hot path (every
    reading): names are bound locally and the median is computed only past the floor, and a
    run whose values all lie within the floor of each other is judged for STUCK alone.
    """
    floor = SPIKE_FLOOR.get(metric)
    recent = window.recent
    if floor is None or not raws:
        return _stuck_run(window, raws)
    together = recent + raws
    # every window of the run and every value judged against it lie within [lo, hi]: if
    # hi - lo <= floor, no value is past the floor from its window's extremes (rounded
    # differences are monotone, so fl(raw - min) <= fl(hi - lo)), hence no spike, as below
    if max(together) - min(together) <= floor:
        return _stuck_run(window, raws)
    out: list[int] = []
    append = out.append
    last = window.last
    repeats = window.repeats
    for raw in raws:
        extra = 0
        if last == raw and raw != 0.0:
            if repeats < _REPEATS_CAP:
                repeats += 1
            if repeats >= _REPEATS_CAP:
                extra = _STUCK
        else:
            repeats = 0
        if floor is not None and len(recent) >= MIN_HISTORY:
            ordered = sorted(recent)
            # the median lies between the extremes: within `floor` of both, no spike is possible
            # (differences, not sums: rounding keeps |raw - median| <= the larger difference)
            if raw - ordered[0] > floor or ordered[-1] - raw > floor:
                med = _median(ordered)
                deviation = abs(raw - med)
                # a spike exceeds max(floor, k * MAD) >= floor, so the MAD is needed only past the floor
                if deviation > floor and deviation > SPIKE_MADS * _median(sorted([abs(v - med) for v in recent])):
                    extra |= _SPIKE
        last = raw
        recent.append(raw)
        if len(recent) > WINDOW:
            del recent[0]
        append(extra)
    window.last = last
    window.repeats = repeats
    return out


def _stuck_run(window: SeriesWindow, raws: list[float]) -> list[int]:
    """`flag_run` for a run in which no value can be a spike: STUCK bits only."""
    out = [0] * len(raws)
    last = window.last
    repeats = window.repeats
    for n, raw in enumerate(raws):
        if last == raw and raw != 0.0:
            if repeats < _REPEATS_CAP:
                repeats += 1
            if repeats >= _REPEATS_CAP:
                out[n] = _STUCK
        else:
            repeats = 0
        last = raw
    recent = window.recent
    recent.extend(raws)
    if len(recent) > WINDOW:
        del recent[:-WINDOW]
    window.last = last
    window.repeats = repeats
    return out


STUCK_SPIKE_RULE = SeriesRule(
    flag_run=flag_run, no_window_flags=NO_WINDOW, exempt_metrics=EXEMPT, bits=_STUCK | _SPIKE,
    history=max(WINDOW, STUCK_REPEATS),  # STUCK_REPEATS values decide the capped repeat count
)
