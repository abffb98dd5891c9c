"""Raw and calibrated readings of one device: JSON for apps, CSV for a class spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from psycopg.rows import dict_row

from api.deps import DbDep
from api.params import DeviceId, Limit, Metric, Page, check_metric, time_range

router = APIRouter(prefix="/v1", tags=["readings"])


@router.get("/readings", summary="Readings of one device and metric in a time range")
async def readings(
    db: DbDep,
    device_id: DeviceId,
    metric: Metric | None = None,
    start: datetime | None = Query(None, description="ISO 8601; default end - 1 day"),
    end: datetime | None = Query(None, description="ISO 8601; default now"),
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the public parameter name
    limit: Limit = 10_000,
    page: Page = 1,
) -> Any:
    if metric is not None:
        check_metric(metric)
    t0, t1 = time_range(start, end, timedelta(days=1))
    where = "device_id = %s AND time >= %s AND time < %s" + (" AND metric = %s" if metric else "")
    args: list[Any] = [device_id, t0, t1] + ([metric] if metric else [])
    if format == "csv":
        return StreamingResponse(
            _csv_rows(db, where, args), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{device_id}.csv"'},
        )
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT time, metric, value, raw, flags, calibration_id FROM readings WHERE {where} "
            "ORDER BY time, metric LIMIT %s OFFSET %s",
            [*args, limit, (page - 1) * limit],
        )
        rows = await cur.fetchall()
        found = (page - 1) * limit + len(rows)
        if len(rows) == limit:  # more pages may follow: count them (an index range count)
            await cur.execute(f"SELECT count(*) AS n FROM readings WHERE {where}", args)
            counted = await cur.fetchone()
            found = int(counted["n"]) if counted else found
    return {
        "meta": {"device_id": device_id, "metric": metric, "start": t0, "end": t1, "page": page, "limit": limit,
                 "found": found},
        "results": rows,
    }


async def _csv_rows(db: Any, where: str, args: list[Any]) -> AsyncIterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["time", "metric", "value", "raw", "flags", "calibration_id"])
    yield buf.getvalue()
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT time, metric, value, raw, flags, calibration_id FROM readings WHERE {where} "
            "ORDER BY time, metric",
            args,
        )
        while batch := await cur.fetchmany(5000):
            buf.seek(0)
            buf.truncate()
            for t, m, v, r, f, c in batch:
                writer.writerow([t.isoformat(), m, "" if v is None else v, r, f, "" if c is None else c])
            yield buf.getvalue()


