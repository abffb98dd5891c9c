"""Reusable, validated parameters (paging, time range, metric, device id, text, concentrations).

Every rule about what a client may send is written here once, so that each bad value becomes a
422 with a reason before it reaches PostgreSQL or the AQI arithmetic: a NUL byte (PostgreSQL
text cannot hold one), a date whose shift by the default range would overflow, a number too big
or not finite for the Decimal rounding of the AQI tables.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from pydantic import AfterValidator, BeforeValidator

from calibration.aqi import SCALES, AqiError, AqiScale, get_scale
from contracts.ids import ANY_DEVICE_ID_SCHEMA
from contracts.metrics import METRICS

NO_NUL = r"^[^\x00]*$"
"""Free text may hold anything but a NUL byte, which PostgreSQL's text type refuses."""

DEVICE_ID_PATTERN = ANY_DEVICE_ID_SCHEMA
"""Any stored device id: citysense hardware ids and LASS ids (the rule of contracts.ids)."""

DeviceId = Annotated[
    str, Query(pattern=DEVICE_ID_PATTERN, description="Device id", examples=["tp-school-0042"])
]
DeviceIdInPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="Device id", examples=["tp-school-0042"])]
Metric = Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Metric name, e.g. pm25")]
Limit = Annotated[int, Query(ge=1, le=100_000, description="Rows per page")]
Page = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")]
SchoolName = Annotated[
    str, Query(min_length=1, max_length=200, pattern=NO_NUL, description="School name as registered")
]

MAX_RANGE = timedelta(days=366)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Times outside [EARLIEST, LATEST) are refused: no reading is there, and shifting them could overflow."""


def _supported_time(value: datetime) -> datetime:
    """UTC for naive times; a 422 for times outside the supported years."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year - 1}")
    return value


def _iso_text(value: object) -> object:
    """Only ISO 8601 text, as the schema says (`format: date-time`): pydantic would also take Unix seconds."""
    if isinstance(value, str) and not ("-" in value[:5] and value[:4].isdigit()):
        raise ValueError("must be an ISO 8601 time such as 2025-01-31T08:00:00+08:00")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_supported_time)]
"""An ISO 8601 time between 1970 and 2199, timezone-aware (naive means UTC)."""

PM25_HIGH = METRICS["pm25"].high


def _concentration_or_missing(value: float) -> float:
    """An hourly PM2.5 average: NaN means a missing hour; anything else must be a real concentration."""
    if math.isnan(value):
        return value
    if not math.isfinite(value) or abs(value) > PM25_HIGH:
        raise ValueError(f"must be 'nan' (missing hour) or a number between -{PM25_HIGH:g} and {PM25_HIGH:g}")
    return value


HourlyPm25 = Annotated[float, AfterValidator(_concentration_or_missing)]


def _comma_separated(value: object) -> object:
    """`hourly=20,22,25` as well as `hourly=20&hourly=22&hourly=25`: each text item split at commas."""
    if isinstance(value, list):
        return [part.strip() for item in value for part in (item.split(",") if isinstance(item, str) else [item])]
    return value


HourlyPm25List = Annotated[
    list[HourlyPm25],
    BeforeValidator(_comma_separated),
    Query(min_length=1, max_length=24,
          description="Hourly PM2.5 averages, most recent first, up to 12 used; 'nan' for a missing hour; "
          "repeated (hourly=20&hourly=22) or comma-separated (hourly=20,22)"),
]


def _known_scale(key: str | None) -> str | None:
    """A scale key of calibration.aqi.SCALES (None: not given); anything else is a 422 listing the known keys."""
    if key is None:
        return None
    try:
        return get_scale(key).key
    except AqiError as exc:
        raise ValueError(str(exc)) from None


def _scale_enum_schema(schema: dict[str, Any]) -> None:
    """The OpenAPI schema of `scale`: a string enum of the registry's keys (omitted means the server's default)."""
    schema.pop("anyOf", None)
    schema.update(type="string", enum=list(SCALES))


def chosen_scale(
    request: Request,
    scale: Annotated[
        str | None,
        AfterValidator(_known_scale),
        Query(max_length=64, json_schema_extra=_scale_enum_schema,
              description=f"AQI scale, one of {', '.join(SCALES)}; default: the server's "
              "CITYSENSE_AQI_DEFAULT_SCALE (tw_moenv_2025 unless set)"),
    ] = None,
) -> AqiScale:
    """The scale a request names, else the server's default (`aqi_default_scale`): one rule for every AQI route."""
    return get_scale(scale or request.app.state.settings.aqi_default_scale)


ScaleDep = Annotated[AqiScale, Depends(chosen_scale)]
"""The AQI scale of a request; its keys are an enum in OpenAPI, built from calibration.aqi.SCALES."""
Pm25 = Annotated[
    float,
    Query(ge=0, le=PM25_HIGH, allow_inf_nan=False,
          description=f"PM2.5 in µg/m³ (24-hour or real-time average), 0 to {PM25_HIGH:g}"),
]


def check_metric(metric: str) -> str:
    if metric not in METRICS and not metric.startswith("lass_"):
        raise HTTPException(
            status_code=422,
            detail=f"unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}",
        )
    return metric


def time_range(start: datetime | None, end: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    """Resolve [start, end) from Timestamp parameters; refuse reversed or huge ranges."""
    end = end or datetime.now(UTC)
    start = start or max(EARLIEST, end - default)
    if start >= end:
        raise HTTPException(
            status_code=422, detail=f"start ({start.isoformat()}) must be before end ({end.isoformat()})"
        )
    if end - start > MAX_RANGE:
        raise HTTPException(
            status_code=422, detail="time range longer than 366 days; use /v1/series with a coarser bucket"
        )
    return start, end
