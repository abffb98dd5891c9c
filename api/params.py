"""Reusable, validated query parameters (paging, time range, metric, device id)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import HTTPException, Query

from contracts.metrics import METRICS

DeviceId = Annotated[
    str, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Device id", examples=["tp-school-0042"])
]
Metric = Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Metric name, e.g. pm25")]
Limit = Annotated[int, Query(ge=1, le=100_000, description="Rows per page")]
Page = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")]

MAX_RANGE = timedelta(days=366)


def check_metric(metric: str) -> str:
    if metric not in METRICS and not metric.startswith("lass_"):
        raise HTTPException(
            status_code=422,
            detail=f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}",
        )
    return metric


def time_range(start: datetime | None, end: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    """Resolve [start, end) with UTC for naive times; refuse reversed or huge ranges."""
    now = datetime.now(UTC)
    end = end or now
    start = start or end - default
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    if start >= end:
        raise HTTPException(
            status_code=422, detail=f"start ({start.isoformat()}) must be before end ({end.isoformat()})"
        )
    if end - start > MAX_RANGE:
        raise HTTPException(
            status_code=422, detail="time range longer than 366 days; use /v1/series with a coarser bucket"
        )
    return start, end
