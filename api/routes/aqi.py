"""AQI tables and index computation (US EPA 2024, Taiwan MOENV 2025): pure, no database.

Served from `calibration.aqi`, so the breakpoints a client downloads are the very ones the
server uses, and a school's display can colour its own readings without a second source.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel

from api.errors import error_responses
from api.params import HourlyPm25List, Pm25, ScaleDep
from api.rate_limit import RateLimited
from calibration.aqi import SCALES, AqiError, AqiResult, AqiScale, compute_aqi, get_scale, realtime_aqi

router = APIRouter(
    prefix="/v1/aqi", tags=["aqi"], dependencies=[RateLimited], responses=error_responses(404, 422, 429)
)

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


def category_out(result: AqiResult) -> CategoryOut:
    """The category of an index value as the API shows it."""
    category = result.category
    return CategoryOut(
        key=category.key,
        name=category.name,
        name_local=category.name_local,
        aqi_low=category.aqi_low,
        aqi_high=category.aqi_high,
        color=category.color,
    )


def _out(result: AqiResult) -> AqiOut:
    return AqiOut(
        scale=result.scale,
        concentration=result.concentration,
        concentration_used=result.concentration_used,
        aqi=result.aqi,
        beyond_index=result.beyond_index,
        category=category_out(result),
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
async def compute(pm25: Pm25, scale: ScaleDep) -> AqiOut:
    try:
        return _out(compute_aqi(scale, pm25))
    except AqiError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc


@router.get(
    "/realtime",
    summary="Real-time AQI from the last hourly PM2.5 averages, most recent first (NowCast / MOENV 12h+4h)",
)
async def realtime(hourly: HourlyPm25List, scale: ScaleDep) -> AqiOut:
    result = realtime_aqi(scale, hourly)
    if result is None:
        raise HTTPException(
            status_code=422, detail=f"not enough valid hours for the {scale.key} real-time rule: {scale.realtime}"
        )
    return _out(result)
