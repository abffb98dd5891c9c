"""Alerts and school flags: list and acknowledge alerts, read a school's air-quality flag.

The SQL is alerts/store.py's (the evaluator's own statements), so the API shows exactly the
state the evaluator writes. Acknowledging needs the admin token and a name: one token is
shared by the staff of a bureau, so the token says who may, the `by` field says who did.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from alerts.rules import RULE_NAMES
from alerts.store import AlertFilter, acknowledge, list_alerts, school_flag_row
from api.deps import AdminDep, DbDep, PrimaryDbDep
from api.errors import error_responses
from api.params import NO_NUL, DeviceId, Timestamp
from api.rate_limit import RateLimited

router = APIRouter(prefix="/v1", tags=["alerts"], dependencies=[RateLimited], responses=error_responses(422, 429, 503))

RuleName = Literal[
    "device_silent", "device_stuck", "implausible", "school_air", "hotspot", "pipeline", "parking_relearn"
]
if set(get_args(RuleName)) != set(RULE_NAMES):
    raise RuntimeError("api/routes/alerts.py RuleName differs from alerts.rules.RULE_NAMES")


class AckIn(BaseModel):
    """Who acknowledges (a name or e-mail address the bureau knows them by)."""

    by: str = Field(min_length=1, max_length=200, pattern=NO_NUL, examples=["duty officer Lin"])


@router.get("/alerts", summary="Alerts, newest first (hotspots by excess, largest first)")
async def get_alerts(
    db: DbDep,
    state: Annotated[Literal["open", "acknowledged", "resolved"] | None, Query()] = None,
    rule: Annotated[RuleName | None, Query()] = None,
    school: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
    device: DeviceId | None = None,
    start: Annotated[Timestamp | None, Query(alias="from", description="alerts still open at or after this")] = None,
    end: Annotated[Timestamp | None, Query(alias="to", description="alerts started before this")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> dict[str, Any]:
    if start is not None and end is not None and start >= end:
        raise HTTPException(status_code=422, detail=f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    found, rows = await list_alerts(
        db, AlertFilter(state, rule, school, device, start, end, limit=limit, offset=(page - 1) * limit)
    )
    return {"meta": {"found": found, "page": page, "limit": limit}, "results": rows}


@router.post("/alerts/{alert_id}/ack", responses=error_responses(400, 401, 403, 404),
             summary="Acknowledge an open alert (admin); it stays until its condition clears")
async def ack_alert(
    alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: AckIn, db: PrimaryDbDep, _: AdminDep
) -> dict[str, Any]:
    row = await acknowledge(db, alert_id, body.by)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id}")
    return row


@router.get("/schools/{school}/flag", responses=error_responses(404),
            summary="A school's air-quality flag: colour, AQI and since when it shows that colour")
async def get_school_flag(
    school: Annotated[str, Path(max_length=200, description="School name as registered")], db: DbDep
) -> dict[str, Any]:
    if "\x00" in school:
        raise HTTPException(status_code=422, detail="path parameter 'school': must not hold a NUL byte")
    row = await school_flag_row(db, school)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no flag for school {school!r} yet (no box or too few hours)")
    return row
