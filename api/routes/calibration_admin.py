"""Admin: co-location fits and fleet drift checks over HTTP, the same jobs and JSON as `citysense calibrate`."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from api.deps import AdminDep
from api.errors import error_responses
from api.params import NO_NUL, Timestamp
from calibration.drift import TUNABLES, DriftConfig, DriftFinding, config_from
from calibration.fitting import MIN_POINTS_DEFAULT, FitError
from calibration.models import CalibrationModelError
from calibration.reference_import import ReferenceFormatError, parse_reference
from contracts.ids import V1_DEVICE_ID_SCHEMA
from ingest.calibration_jobs import FitRequest, check_drift, fit_device
from ingest.calibration_store import StoreError

router = APIRouter(prefix="/v1/admin/calibration", tags=["admin"], responses=error_responses(400, 401, 403, 422, 503))

MAX_REFERENCE_CHARS = 20_000_000  # a year of a MOENV station file is about 1 MB


class FitIn(BaseModel):
    """A fit as `citysense calibrate fit` takes it, with the reference file's text in the body."""

    device_id: str = Field(pattern=V1_DEVICE_ID_SCHEMA, examples=["tp-school-0042"])
    reference: str = Field(max_length=MAX_REFERENCE_CHARS, description="MOENV station CSV or time,pm25[,rh] CSV text")
    reference_name: str = Field("reference", max_length=200, pattern=NO_NUL)
    format: Literal["auto", "moenv", "generic"] = "auto"
    station: str | None = Field(None, max_length=100, pattern=NO_NUL)
    tz: str | None = Field(None, max_length=64, pattern=NO_NUL, examples=["Asia/Taipei"])
    unit: Literal["ug/m3", "mg/m3"] = "ug/m3"
    start: Timestamp = Field(alias="from")
    end: Timestamp = Field(alias="to")
    model: Literal["linear", "multilinear_rh"] = "linear"
    robust: bool = False
    min_points: int = Field(MIN_POINTS_DEFAULT, ge=3)
    save: bool = Field(True, description="false: a dry run, nothing stored")
    valid_from: Timestamp | None = None


def _fit(database_url: str, request: FitRequest) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        return fit_device(conn, request).as_json()


def _drift(database_url: str, start: datetime, end: datetime, config: DriftConfig) -> list[DriftFinding]:
    with psycopg.connect(database_url) as conn:
        return check_drift(conn, start, end, config)


@router.post(
    "/fit", responses=error_responses(404),
    summary="Fit (and store, unless save is false) one device's model against a reference",
)
async def fit(body: FitIn, request: Request, _: AdminDep) -> dict[str, Any]:
    if body.end <= body.start:
        raise HTTPException(status_code=422, detail="'to' must be after 'from'")
    try:
        reference = parse_reference(body.reference, fmt=body.format, station=body.station, tz=body.tz, unit=body.unit)
    except ReferenceFormatError as exc:
        raise HTTPException(status_code=422, detail=f"reference: {exc}") from None
    job = FitRequest(
        device_id=body.device_id, reference=reference, reference_name=body.reference_name, start=body.start,
        end=body.end, kind=body.model, robust=body.robust, min_points=body.min_points, save=body.save,
        valid_from=body.valid_from,
    )
    try:
        return await asyncio.to_thread(_fit, request.app.state.settings.database_url, job)
    except FitError as exc:
        raise HTTPException(status_code=422, detail=f"fit refused: {exc}") from None
    except (StoreError, CalibrationModelError) as exc:
        status = 404 if str(exc).startswith("unknown device") else 422
        raise HTTPException(status_code=status, detail=str(exc)) from None


def drift_config(**values: float) -> DriftConfig:
    """The drift settings from the query (one parameter per calibration.drift.TUNABLES setting, as the
    CLI's options), checked: a setting that cannot work is a 422 naming it."""
    try:
        return config_from(values)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


drift_config.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter(
        t.name, inspect.Parameter.KEYWORD_ONLY, annotation=t.kind,
        default=Query(t.kind(t.default), description=t.help, le=t.maximum,
                      gt=t.minimum if t.open_below else None, ge=None if t.open_below else t.minimum),
    )
    for t in TUNABLES
])


@router.get("/drift", summary="Drift findings for every located air box (tests against its neighbours' median)")
async def drift(
    request: Request,
    _: AdminDep,
    since: Timestamp | None = Query(None, description="default: `days` before `until`"),
    until: Timestamp | None = Query(None, description="default: the start of this hour"),
    days: int = Query(30, ge=1, le=3660),
    config: DriftConfig = Depends(drift_config),
) -> dict[str, Any]:
    """The same job as `citysense calibrate drift --json` (ingest/calibration_jobs.py), with the same
    settings (calibration.drift.DriftConfig; docs/calibration.md gives the false-alarm rate of each)."""
    end = until or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = since or end - timedelta(days=days)
    if end <= start:
        raise HTTPException(status_code=422, detail="'until' must be after 'since'")
    findings = await asyncio.to_thread(_drift, request.app.state.settings.database_url, start, end, config)
    results = [f.as_json() for f in sorted(findings, key=lambda f: (f.status == "ok", f.device_id))]
    meta = {"found": len(results), "since": start.isoformat(), "until": end.isoformat(),
            "needs_attention": [r["device_id"] for r in results if r["needs_attention"]],
            "drifting": [r["device_id"] for r in results if r["status"] == "drift"],
            "insufficient_data": [r["device_id"] for r in results if r["status"] == "insufficient_data"]}
    return {"meta": meta, "results": results}
