"""CSV export of a whole school's data, wide (one column per metric): ready for a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from api.deps import DbDep
from api.params import time_range

router = APIRouter(prefix="/v1/export", tags=["export"])

COLUMNS = ("pm1", "pm25", "pm10", "t", "rh")

_WIDE = """
SELECT r.time, r.device_id,
       max(r.value) FILTER (WHERE r.metric = 'pm1')  AS pm1,
       max(r.value) FILTER (WHERE r.metric = 'pm25') AS pm25,
       max(r.value) FILTER (WHERE r.metric = 'pm10') AS pm10,
       max(r.value) FILTER (WHERE r.metric = 't')    AS t,
       max(r.value) FILTER (WHERE r.metric = 'rh')   AS rh,
       max(r.raw) FILTER (WHERE r.metric = 'pm25')   AS pm25_raw,
       bit_or(r.flags) AS flags
FROM readings r JOIN devices d USING (device_id)
WHERE d.school = %s AND r.time >= %s AND r.time < %s
GROUP BY r.time, r.device_id
ORDER BY r.time, r.device_id
"""


@router.get("/school.csv", summary="All readings of a school's boxes as CSV (one row per box and time)")
async def school_csv(
    db: DbDep,
    school: str = Query(..., min_length=1, max_length=200, description="School name as registered"),
    start: datetime | None = Query(None, description="ISO 8601; default end - 7 days"),
    end: datetime | None = None,
) -> StreamingResponse:
    t0, t1 = time_range(start, end, timedelta(days=7))
    cur = await db.execute("SELECT count(*) FROM devices WHERE school = %s", [school])
    row = await cur.fetchone()
    if not row or row[0] == 0:
        raise HTTPException(status_code=404, detail=f"no devices registered for school {school!r}")
    return StreamingResponse(
        _rows(db, [school, t0, t1]), media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="citysense-school.csv"'},
    )


async def _rows(db: Any, args: list[Any]) -> AsyncIterator[str]:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["time_utc", "device_id", *COLUMNS, "pm25_raw", "flags"])
    yield buf.getvalue()
    async with db.cursor() as cur:
        await cur.execute(_WIDE.encode(), args)
        while batch := await cur.fetchmany(5000):
            buf.seek(0)
            buf.truncate()
            for t, device, *values in batch:
                out.writerow([t.isoformat(), device, *("" if v is None else v for v in values)])
            yield buf.getvalue()
