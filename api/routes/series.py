"""Bucketed series (hourly, daily) of one device and metric, with coverage per bucket.

Every bucket says how many readings it holds against how many the device's interval
would give (`expected`), so a bureau can tell a clean hour from a half-empty one. The interval
is the one the request gives, else the device's own cadence as observed: the median spacing
of its last readings of the metric before the range ends (devices report every 10 s, 60 s or
300 s; assuming 60 s made a 5-minute box look 8 % covered, and a 10-second box look complete
with five readings in six missing). On
TimescaleDB the continuous aggregates answer (real-time aggregation on); on the plain
PostgreSQL fallback the buckets are computed from raw readings, so they are never stale.

Both backends give the same JSON: the range is widened to whole buckets (start down, end up,
on UTC bucket boundaries) and both select by bucket, so neither returns a partial first or
last bucket; min and max are rounded to the metric's registry precision and avg to one digit
more (float sums in a different order differ in the last bits, never in those digits).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from psycopg.rows import dict_row

from api.deps import DbDep
from api.errors import READ_ERRORS, error_responses
from api.params import DeviceId, Metric, Timestamp, check_metric, time_range
from api.rate_limit import RateLimited
from contracts.metrics import METRICS

router = APIRouter(prefix="/v1", tags=["series"], dependencies=[RateLimited], responses=READ_ERRORS)

BUCKETS = {"1h": (timedelta(hours=1), "readings_1h"), "1d": (timedelta(days=1), "readings_1d")}

_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's and time_bucket's boundaries, hourly and daily

_FROM_RAW = """
SELECT date_bin(%(width)s::interval, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       avg(value) AS avg, min(value) AS min, max(value) AS max, count(value) AS count
FROM readings
WHERE device_id = %(device)s AND metric = %(metric)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1 ORDER BY 1
"""

_OBSERVED_INTERVAL = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FROM (
    SELECT extract(epoch FROM time - lag(time) OVER (ORDER BY time)) AS gap
    FROM (SELECT time FROM readings WHERE device_id = %(device)s AND metric = %(metric)s AND time < %(end)s
          ORDER BY time DESC LIMIT %(sample)s) recent
) gaps WHERE gap > 0
"""
CADENCE_SAMPLE = 1001
"""Readings (1000 gaps) the observed interval is the median of: recent enough to follow a config change."""

_FROM_AGGREGATE = """
SELECT bucket, avg, min, max, count FROM {view}
WHERE device_id = %(device)s AND metric = %(metric)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
"""


@router.get(
    "/series", responses=error_responses(404),
    summary="Hourly or daily avg/min/max/count of one device and metric, with coverage",
)
async def series(
    request: Request,
    db: DbDep,
    device_id: DeviceId,
    metric: Metric = "pm25",
    bucket: Literal["1h", "1d"] = "1h",
    start: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default end - 7 days"),
    end: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default now"),
    interval_s: int | None = Query(
        None, ge=1, le=86400,
        description="The device's reporting interval in s, for coverage; default: its observed cadence",
    ),
) -> dict[str, Any]:
    check_metric(metric)
    width, view = BUCKETS[bucket]
    t0, t1 = _whole_buckets(*time_range(start, end, timedelta(days=7)), width)
    args = {"device": device_id, "metric": metric, "start": t0, "end": t1, "width": width}
    sql = _FROM_AGGREGATE.format(view=view) if request.app.state.backend == "timescaledb" else _FROM_RAW
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), args)
        rows = await cur.fetchall()
        if not rows:  # an empty range of a known device is an answer; an unknown device is a 404
            await cur.execute("SELECT 1 FROM devices WHERE device_id = %s", [device_id])
            if await cur.fetchone() is None:
                raise HTTPException(status_code=404, detail=f"no device {device_id!r}")
        interval_source = "request" if interval_s is not None else None
        if interval_s is None and rows:
            await cur.execute(_OBSERVED_INTERVAL.encode(), {**args, "sample": CADENCE_SAMPLE})
            found = await cur.fetchone()
            if found is not None and found["percentile_cont"] is not None:
                interval_s, interval_source = max(1, round(float(found["percentile_cont"]))), "observed"
    expected = int(width.total_seconds() // interval_s) if interval_s else None
    decimals = METRICS[metric].decimals if metric in METRICS else 3
    for r in rows:
        for key, places in (("avg", decimals + 1), ("min", decimals), ("max", decimals)):
            if r[key] is not None:
                r[key] = round(float(r[key]), places)
        r["expected"] = expected
        r["coverage"] = round(min(1.0, r["count"] / expected), 3) if expected else None
    return {
        "meta": {"device_id": device_id, "metric": metric, "bucket": bucket, "start": t0, "end": t1,
                 "found": len(rows), "backend": request.app.state.backend, "decimals": decimals,
                 "interval_s": interval_s, "interval_source": interval_source},
        "results": rows,
    }


def _whole_buckets(start: datetime, end: datetime, width: timedelta) -> tuple[datetime, datetime]:
    """[start, end) widened to bucket boundaries: start down, end up."""
    first = _ORIGIN + ((start - _ORIGIN) // width) * width
    last = _ORIGIN + -((_ORIGIN - end) // width) * width
    return first, last
