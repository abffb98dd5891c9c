"""Server-sent events: new values of one metric as they are committed, for live maps.

The stream polls the database (one cheap index range scan per tick) instead of tapping
the gateway, so the API stays a reader of the database like every other consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import read_pool
from api.errors import READ_ERRORS
from api.params import Metric, Timestamp, check_metric
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1", tags=["stream"], dependencies=[RateLimited], responses=READ_ERRORS)

_NEW = """
SELECT r.device_id, r.time, r.value, r.raw, r.flags, d.lat, d.lon
FROM readings r JOIN devices d USING (device_id)
WHERE r.metric = %s AND r.time > %s AND r.time <= now() + interval '10 minutes'
ORDER BY r.time LIMIT 5000
"""


@router.get(
    "/stream", summary="Server-sent events of new readings of one metric", response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The event stream"}},
)
async def stream(
    request: Request,
    metric: Metric = "pm25",
    poll_s: float = Query(2.0, ge=0.5, le=60.0),
    max_events: int = Query(0, ge=0, le=1_000_000, description="Close after this many events (0 = never)"),
    since: Timestamp | None = Query(
        None, description="Resume after this time (ISO 8601, 1970-2199); default 2 minutes ago"
    ),
) -> StreamingResponse:
    check_metric(metric)
    pool = read_pool(request)
    start: datetime = since or datetime.now(UTC) - timedelta(minutes=2)

    async def events() -> AsyncIterator[bytes]:
        nonlocal start
        sent = 0
        yield b": citysense live stream\n\n"
        while not await request.is_disconnected():
            async with pool.connection() as conn:
                cur = await conn.execute(_NEW.encode(), [metric, start])
                rows = await cur.fetchall()
            for device_id, t, value, raw, flags, lat, lon in rows:
                start = max(start, t)
                doc = {"device_id": device_id, "time": t.isoformat(), "metric": metric, "value": value,
                       "raw": raw, "flags": flags, "lat": lat, "lon": lon}
                yield b"event: reading\ndata: " + orjson.dumps(doc) + b"\n\n"
                sent += 1
                if max_events and sent >= max_events:
                    return
            await asyncio.sleep(poll_s)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
