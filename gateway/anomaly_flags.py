"""Stateful quality flags: stuck sensors and spikes, judged against each device's recent values.

State is per (device, metric) and bounded: a short window of recent values and a repeat
counter, evicted oldest-first beyond `max_series`. A gateway restart forgets the state,
which only delays these two flags by a few readings.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from contracts.flags import Flag
from contracts.records import ReadingRow

STUCK_REPEATS = 20
WINDOW = 9
MIN_HISTORY = 5
SPIKE_MADS = 6.0 * 1.4826  # robust z-score threshold: 6 scaled median absolute deviations
# Absolute floor under which a jump is never called a spike, per metric (registry units).
SPIKE_FLOOR = {"pm1": 50.0, "pm25": 50.0, "pm10": 80.0, "t": 8.0, "rh": 25.0, "p": 15.0, "co2": 800.0}
EXEMPT = frozenset({"occupied", "batt_mv", "rssi"})
_STUCK = int(Flag.STUCK)  # plain ints: enum arithmetic costs ~1 µs per operation on the hot path
_SPIKE = int(Flag.SPIKE)


def _median(values: list[float]) -> float:
    """Median of an already sorted list."""
    n = len(values)
    half = n // 2
    return values[half] if n % 2 else (values[half - 1] + values[half]) / 2.0


class _Series:
    __slots__ = ("last", "recent", "repeats")

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.last: float | None = None
        self.repeats = 0


class AnomalyFlagger:
    def __init__(self, max_series: int = 200_000) -> None:
        self.max_series = max_series
        self._series: OrderedDict[tuple[str, str], _Series] = OrderedDict()

    def _get(self, key: tuple[str, str]) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
            if len(self._series) > self.max_series:
                self._series.popitem(last=False)
        return series

    def flag(self, rows: list[ReadingRow]) -> list[ReadingRow]:
        """Rows with STUCK/SPIKE bits added; values are never changed.

        Hot path (every reading): names are bound locally and the lookup of `_get` is
        inlined for the common case of a known series.
        """
        out: list[ReadingRow] = []
        append = out.append
        known = self._series
        get = self._get
        floors = SPIKE_FLOOR
        for row in rows:
            value = row[4]
            metric = row[2]
            if value is None or metric in EXEMPT:
                append(row)
                continue
            raw = row[3]
            key = (row[1], metric)
            series = known.get(key) or get(key)
            extra = 0
            if series.last == raw and raw != 0.0:
                series.repeats += 1
                if series.repeats >= STUCK_REPEATS - 1:
                    extra = _STUCK
            else:
                series.repeats = 0
            recent = series.recent
            floor = floors.get(metric)
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
            series.last = raw
            recent.append(raw)
            if extra:
                ts, device_id, _metric, _raw, _value, flags, cal = row
                append((ts, device_id, metric, raw, value, flags | extra, cal))
            else:
                append(row)
        return out
