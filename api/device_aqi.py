"""Real-time AQI of stored devices, from their last hourly PM2.5 averages, many devices in one query.

The index is the scale's own real-time rule (`calibration.aqi.realtime_aqi`: the MOENV
0.5 x 12 h + 0.5 x 4 h moving average, the US EPA NowCast) applied to the hourly averages of
calibrated PM2.5 (`readings.value`) of the last `REALTIME_HOURS` complete hours, most recent
first. Only complete hours count, as the agencies publish them: an hour's average exists once
the hour is over, so at 14:20 the latest hour used is 13:00-14:00.

Where the hours come from is the rule of /v1/series: on TimescaleDB the continuous aggregate
`readings_1h` (real-time aggregation on, so the hours not yet materialised are computed from
raw rows by TimescaleDB itself); on the plain-PostgreSQL fallback, whose `readings_1h` table is
refreshed only by `citysense db maintain` (ingest/aggregates.py), the same buckets computed
from `readings`, so the index is never stale. Both give avg(value) per UTC hour bucket.

Cost: one statement for any number of devices; it reads at most 12 hourly rows per device
from the aggregate (TimescaleDB) or the raw rows of 12 hours per device (fallback, through
the `(device_id, metric, time)` unique index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from calibration.aqi import REALTIME_HOURS, AqiResult, AqiScale, get_scale, realtime_aqi

HOUR = timedelta(hours=1)
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's and time_bucket's hourly boundaries

_WANTED = """
WITH wanted AS (
    SELECT device_id FROM devices
    WHERE CASE WHEN %(ids)s::text[] IS NULL THEN retired_at IS NULL AND kind <> 'parking'
               ELSE device_id = ANY(%(ids)s::text[]) END
), hourly AS ({hourly})
SELECT w.device_id, h.bucket, h.avg FROM wanted w LEFT JOIN hourly h USING (device_id)
"""

_HOURLY_FROM_AGGREGATE = """
    SELECT device_id, bucket, avg FROM readings_1h
    WHERE metric = 'pm25' AND bucket >= %(start)s AND bucket < %(end)s
      AND device_id IN (SELECT device_id FROM wanted)
"""

_HOURLY_FROM_RAW = """
    SELECT device_id, date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           avg(value) AS avg
    FROM readings
    WHERE metric = 'pm25' AND time >= %(start)s AND time < %(end)s
      AND device_id IN (SELECT device_id FROM wanted)
    GROUP BY 1, 2
"""


@dataclass(frozen=True)
class HourValue:
    """One hour of a device: the start of its UTC bucket and its mean calibrated PM2.5 (None: no reading)."""

    time: datetime
    pm25: float | None


@dataclass(frozen=True)
class DeviceAqi:
    """A device's real-time index on one scale, with the hours it was computed from.

    `hours` holds all `REALTIME_HOURS` hours the rule looks at, most recent first, missing ones
    with `pm25=None`; `result` is None when they are too few for the scale's rule
    (`insufficient_reason` then says what the rule needs).
    """

    device_id: str
    scale: AqiScale
    hours: tuple[HourValue, ...]
    result: AqiResult | None

    @property
    def hours_used(self) -> tuple[HourValue, ...]:
        """The hours that hold a value, most recent first."""
        return tuple(hour for hour in self.hours if hour.pm25 is not None)

    @property
    def insufficient_reason(self) -> str | None:
        """Why there is no index (None when there is one)."""
        if self.result is not None:
            return None
        return (f"not enough hourly PM2.5 for the {self.scale.key} real-time rule: {len(self.hours_used)} of the "
                f"last {REALTIME_HOURS} complete hours have data; the rule: {self.scale.realtime}")


def last_complete_hours(now: datetime) -> tuple[datetime, ...]:
    """The starts of the `REALTIME_HOURS` complete UTC hours before `now`, most recent first."""
    current = _ORIGIN + ((now - _ORIGIN) // HOUR) * HOUR
    return tuple(current - HOUR * (i + 1) for i in range(REALTIME_HOURS))


async def realtime_aqi_of_devices(
    conn: AsyncConnection[Any],
    backend: str | None,
    scale: AqiScale | str,
    device_ids: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, DeviceAqi]:
    """The real-time AQI of each device, keyed by device id, from one SQL statement.

    `device_ids=None` means every air-quality device in service (not retired, not parking);
    a given id that is not in `devices` is absent from the answer (a route's 404), one with
    too few hours is present with `result=None`. `backend` is the recorded backend
    (`app.state.backend`): 'timescaledb' reads the continuous aggregate, anything else
    computes the hours from raw readings. `now` defaults to the current time.
    """
    table = get_scale(scale) if isinstance(scale, str) else scale
    hours = last_complete_hours(now or datetime.now(UTC))
    hourly = _HOURLY_FROM_AGGREGATE if backend == "timescaledb" else _HOURLY_FROM_RAW
    args = {"ids": None if device_ids is None else list(device_ids), "start": hours[-1], "end": hours[0] + HOUR}
    values: dict[str, dict[datetime, float | None]] = {}
    async with conn.cursor() as cur:
        await cur.execute(_WANTED.format(hourly=hourly).encode(), args)
        for device_id, bucket, avg in await cur.fetchall():
            by_hour = values.setdefault(device_id, {})
            if bucket is not None:
                by_hour[bucket] = None if avg is None else float(avg)
    answer: dict[str, DeviceAqi] = {}
    for device_id, by_hour in values.items():
        series = tuple(HourValue(hour, by_hour.get(hour)) for hour in hours)
        answer[device_id] = DeviceAqi(device_id, table, series, realtime_aqi(table, [h.pm25 for h in series]))
    return answer
