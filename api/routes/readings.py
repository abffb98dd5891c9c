"""Raw and calibrated readings of one device: JSON for apps, CSV for a class spreadsheet.

A CSV, or a JSON page of more than EXPORT_ROWS rows, is an export (api/exports.py): it takes
one of a bounded number of slots, and the CSV is read window by window from the pool.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from psycopg.rows import dict_row

from api.deps import DbDep, read_pool
from api.errors import READ_ERRORS
from api.exports import EXPORT_ROWS, SlotJSONResponse, claim_export_slot, csv_export, csv_lines
from api.params import DeviceId, Limit, Metric, Page, Timestamp, check_metric, time_range
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1", tags=["readings"], dependencies=[RateLimited], responses=READ_ERRORS)

_COLUMNS = "time, metric, value, raw, flags, calibration_id"


@router.get(
    "/readings", summary="Readings of one device and metric in a time range",
    responses={200: {"content": {"application/json": {}, "text/csv": {}},
                     "description": "A page of readings (JSON) or all readings in the range (CSV)"}},
)
async def readings(
    request: Request,
    db: DbDep,
    device_id: DeviceId,
    metric: Metric | None = None,
    start: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default end - 1 day"),
    end: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default now"),
    format: Literal["json", "csv"] = "json",  # noqa: A002 - the public parameter name
    limit: Limit = 10_000,
    page: Page = 1,
) -> Any:
    if metric is not None:
        check_metric(metric)
    t0, t1 = time_range(start, end, timedelta(days=1))
    where = "device_id = %s AND time >= %s AND time < %s" + (" AND metric = %s" if metric else "")
    if format == "csv":
        pool = read_pool(request)

        async def fetch(a: datetime, b: datetime) -> list[tuple[Any, ...]]:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT {_COLUMNS} FROM readings WHERE {where} ORDER BY time, metric".encode(),
                    [device_id, a, b] + ([metric] if metric else []),
                )
                return await cur.fetchall()

        csv_slot = claim_export_slot(request)
        lines = csv_lines(["time", "metric", "value", "raw", "flags", "calibration_id"], t0, t1, fetch, _csv_row)
        return await csv_export(csv_slot, lines, f"{device_id}.csv")
    slot = claim_export_slot(request) if limit > EXPORT_ROWS else None
    try:
        args: list[Any] = [device_id, t0, t1] + ([metric] if metric else [])
        async with db.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM readings WHERE {where} ORDER BY time, metric LIMIT %s OFFSET %s".encode(),
                [*args, limit, (page - 1) * limit],
            )
            rows = await cur.fetchall()
            found = (page - 1) * limit + len(rows)
            if len(rows) == limit:  # more pages may follow: count them (an index range count)
                await cur.execute(f"SELECT count(*) AS n FROM readings WHERE {where}".encode(), args)
                counted = await cur.fetchone()
                found = int(counted["n"]) if counted else found
        body = {
            "meta": {"device_id": device_id, "metric": metric, "start": t0, "end": t1, "page": page, "limit": limit,
                     "found": found},
            "results": rows,
        }
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    return body if slot is None else SlotJSONResponse(jsonable_encoder(body), slot)


def _csv_row(row: Any) -> list[Any]:
    t, m, v, r, f, c = row
    return [t.isoformat(), m, "" if v is None else v, r, f, "" if c is None else c]
