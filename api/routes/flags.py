"""The meaning of every quality-flag bit, so clients decode `flags` from the source of truth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.errors import error_responses
from api.rate_limit import RateLimited
from contracts.flags import FLAG_DOCS
from contracts.metrics import METRICS

router = APIRouter(prefix="/v1", tags=["reference"], dependencies=[RateLimited], responses=error_responses(429))


@router.get("/flags", summary="Quality flag bits and what each means")
async def flags() -> dict[str, Any]:
    return {"results": [{"bit": int(f).bit_length() - 1, "value": int(f), "name": f.name, "meaning": text}
                        for f, text in FLAG_DOCS.items()]}


@router.get("/metrics-registry", summary="Metric names, units and physical ranges")
async def metric_registry() -> dict[str, Any]:
    return {"results": [{"name": m.name, "unit": m.unit, "low": m.low, "high": m.high} for m in METRICS.values()]}
