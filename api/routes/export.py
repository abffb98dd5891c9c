"""CSV export of a whole school's data, wide (one column per metric): ready for a spreadsheet.

School names match case-insensitively (a teacher types "da'an elementary").

An export (api/exports.py): a bounded number at once, read window by window from the pool.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import DbDep, read_pool
from api.errors import READ_ERRORS, error_responses
from api.exports import claim_export_slot, csv_export, csv_lines
from api.params import SchoolName, Timestamp, time_range
from api.rate_limit import RateLimited
from contracts.metrics import METRICS

router = APIRouter(prefix="/v1/export", tags=["export"], dependencies=[RateLimited], responses=READ_ERRORS)

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
WHERE lower(d.school) = lower(%s) AND r.time >= %s AND r.time < %s
GROUP BY r.time, r.device_id
ORDER BY r.time, r.device_id
"""


@router.get(
    "/school.csv", summary="All readings of a school's boxes as CSV (one row per box and time)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The CSV"}, **error_responses(404)},
)
async def school_csv(
    request: Request,
    db: DbDep,
    school: SchoolName,
    start: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default end - 7 days"),
    end: Timestamp | None = Query(None, description="ISO 8601, 1970-2199; default now"),
    format: Literal["csv", "spreadsheet"] = Query(  # noqa: A002 - the public parameter name
        "csv", description="csv: UTC ISO 8601 times; spreadsheet: a UTF-8 byte-order mark and the city's local "
        "wall-clock times (CITYSENSE_LOCAL_TIMEZONE), which Excel and LibreOffice open as dates",
    ),
) -> StreamingResponse:
    t0, t1 = time_range(start, end, timedelta(days=7))
    cur = await db.execute("SELECT count(*) FROM devices WHERE lower(school) = lower(%s)", [school])
    row = await cur.fetchone()
    if not row or row[0] == 0:
        raise HTTPException(status_code=404, detail=f"no devices registered for school {school!r}")
    pool = read_pool(request)

    async def fetch(a: datetime, b: datetime) -> list[tuple[Any, ...]]:
        async with pool.connection() as conn:
            window = await conn.execute(_WIDE.encode(), [school, a, b])
            return await window.fetchall()

    slot = claim_export_slot(request)
    if format == "spreadsheet":
        zone = ZoneInfo(request.app.state.settings.local_timezone)
        lines = _with_byte_order_mark(csv_lines(["time_local", "device_id", *COLUMNS, "pm25_raw", "flags"], t0, t1,
                                                fetch, lambda row: _spreadsheet_row(row, zone)))
        return await csv_export(slot, lines, "citysense-school-spreadsheet.csv")
    lines = csv_lines(["time_utc", "device_id", *COLUMNS, "pm25_raw", "flags"], t0, t1, fetch, _csv_row)
    return await csv_export(slot, lines, "citysense-school.csv")


# each column rounded to the precision its metric is measured with (the registry's), so a
# spreadsheet shows 22.0, not 21.999575999999998; pm25_raw as pm25, flags as they are
_DECIMALS = [METRICS[m].decimals for m in COLUMNS] + [METRICS["pm25"].decimals]


def _csv_row(row: Any) -> list[Any]:
    t, device, *values = row
    *measured, flags = values
    cells = ["" if v is None else round(v, places) for v, places in zip(measured, _DECIMALS, strict=True)]
    return [t.isoformat(), device, *cells, "" if flags is None else flags]


def _spreadsheet_row(row: Any, zone: ZoneInfo) -> list[Any]:
    """A row with its time as local wall-clock text without offset ("2025-03-01 08:00:00"), which
    spreadsheets read as a date and time."""
    _, *rest = _csv_row(row)
    return [row[0].astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), *rest]


async def _with_byte_order_mark(lines: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """The CSV behind a UTF-8 byte-order mark: Excel opens a CSV as UTF-8 only with one, whatever its locale."""
    first = True
    try:
        async for chunk in lines:
            yield ("\ufeff" + chunk) if first else chunk
            first = False
    finally:
        await lines.aclose()
