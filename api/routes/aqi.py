"""AQI tables and index computation (US EPA 2024, Taiwan MOENV 2025): pure, no database.

Served from `calibration.aqi`, so the breakpoints a client downloads are the very ones the
server uses, and a school's display can colour its own readings without a second source.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel

from api.errors import error_responses
from api.params import HourlyPm25, Pm25
from api.rate_limit import RateLimited
from calibration.aqi import SCALES, AqiError, AqiResult, AqiScale, compute_aqi, get_scale, realtime_aqi

router = APIRouter(
    prefix="/v1/aqi", tags=["aqi"], dependencies=[RateLimited], responses=error_responses(404, 422, 429)
)

ScaleKey = Annotated[str, Query(max_length=64, description=f"AQI scale: one of {sorted(SCALES)}")]


class CategoryOut(BaseModel):
    """A health category with its AQI range and colour."""

    key: str
    name: str
    name_local: str
    aqi_low: int
    aqi_high: int
    color: str


class AqiOut(BaseModel):
    """An index value and the concentration the scale's rounding rule actually used."""

    scale: str
    concentration: float
    concentration_used: float
    aqi: int
    beyond_index: bool
    category: CategoryOut


def _out(result: AqiResult) -> AqiOut:
    category = result.category
    return AqiOut(
        scale=result.scale,
        concentration=result.concentration,
        concentration_used=result.concentration_used,
        aqi=result.aqi,
        beyond_index=result.beyond_index,
        category=CategoryOut(
            key=category.key,
            name=category.name,
            name_local=category.name_local,
            aqi_low=category.aqi_low,
            aqi_high=category.aqi_high,
            color=category.color,
        ),
    )


def _scale_or_404(key: str) -> AqiScale:
    try:
        return get_scale(key)
    except AqiError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


@router.get("/scales", summary="All AQI tables: breakpoints, categories, colours, sources")
async def list_scales() -> list[dict[str, Any]]:
    return [scale.as_dict() for scale in SCALES.values()]


@router.get("/scales/{scale}", summary="One AQI table")
async def get_one_scale(scale: Annotated[str, Path(max_length=64, description="Scale key")]) -> dict[str, Any]:
    return _scale_or_404(scale).as_dict()


@router.get("/compute", summary="AQI for a PM2.5 concentration averaged as the scale requires")
async def compute(
    pm25: Pm25,
    scale: ScaleKey = "us_epa_2024",
) -> AqiOut:
    table = _scale_or_404(scale)
    try:
        return _out(compute_aqi(table, pm25))
    except AqiError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.get(
    "/realtime",
    summary="Real-time AQI from the last hourly PM2.5 averages, most recent first (NowCast / MOENV 12h+4h)",
)
async def realtime(
    hourly: Annotated[
        list[HourlyPm25],
        Query(min_length=1, max_length=24,
              description="Hourly PM2.5, most recent first, up to 12 used; 'nan' for a missing hour"),
    ],
    scale: ScaleKey = "us_epa_2024",
) -> AqiOut:
    table = _scale_or_404(scale)
    result = realtime_aqi(table, hourly)
    if result is None:
        raise HTTPException(
            status_code=422, detail=f"not enough valid hours for the {table.key} real-time rule: {table.realtime}"
        )
    return _out(result)
