"""Admin: register, update and retire devices (through ingest/device_store.py) and read dead letters."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from api.deps import AdminDep, DbDep, PrimaryDbDep
from api.errors import error_responses
from api.params import NO_NUL, DeviceIdInPath
from contracts.ids import V1_DEVICE_ID_SCHEMA
from ingest.device_store import (
    DeviceFields,
    DeviceNotFound,
    DeviceRegisteredAlready,
    new_token,
    register_device_async,
    retire_device_async,
    update_device_async,
)

router = APIRouter(prefix="/v1", tags=["admin"], responses=error_responses(400, 401, 403, 422, 503))


class DeviceFieldsIn(BaseModel):
    """Owner data; a field left out (or null) keeps what is stored, or takes the default when new."""

    kind: Literal["airbox", "parking"] | None = Field(None, description="a new device: airbox")
    name: str | None = Field(None, max_length=200, pattern=NO_NUL)
    school: str | None = Field(None, max_length=200, pattern=NO_NUL)
    site: str | None = Field(None, max_length=200, pattern=NO_NUL)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    sensor_type: str | None = Field(None, max_length=40, pattern=NO_NUL, description="a new air box: pms5003")
    owner: str | None = Field(None, max_length=200, pattern=NO_NUL)
    city: str | None = Field(None, max_length=100, pattern=NO_NUL, examples=["臺北市"])
    district: str | None = Field(None, max_length=100, pattern=NO_NUL, examples=["大安區"])
    authority: str | None = Field(None, max_length=200, pattern=NO_NUL)
    dev_eui: str | None = Field(
        None, max_length=32, pattern=NO_NUL, examples=["70B3D57ED005A1F2"],
        description="a LoRaWAN parking sensor's EUI-64: its ChirpStack uplinks are this device's",
    )

    def fields(self) -> DeviceFields:
        return DeviceFields(self.kind, self.name, self.site, self.school, self.lat, self.lon, self.sensor_type,
                            self.owner, self.city, self.district, self.authority, self.dev_eui)


class DeviceIn(DeviceFieldsIn):
    device_id: str = Field(pattern=V1_DEVICE_ID_SCHEMA, examples=["tp-school-0042"])
    rotate_token: bool = Field(
        False, description="the id is registered already: issue a new token (the old one stops working); "
        "without it such a registration is refused with 409",
    )


def _refused(exc: ValueError | DeviceNotFound | DeviceRegisteredAlready) -> HTTPException:
    status = 404 if isinstance(exc, DeviceNotFound) else 409 if isinstance(exc, DeviceRegisteredAlready) else 422
    return HTTPException(status_code=status, detail=str(exc))


@router.post(
    "/devices", status_code=201, responses=error_responses(409),
    summary="Register a device (committed before the answer); the MQTT password is returned once",
)
async def register(device: DeviceIn, db: PrimaryDbDep, _: AdminDep) -> dict[str, Any]:
    token = new_token()
    try:
        done = await register_device_async(db, device.device_id, device.fields(), token,
                                           rotate_token=device.rotate_token)
    except (ValueError, DeviceRegisteredAlready) as exc:
        raise _refused(exc) from None
    return {
        "device_id": device.device_id, "created": done.created,
        "mqtt": {"username": device.device_id, "password": token,
                 "topic": f"citysense/v1/{done.kind}/{device.device_id}/up"},
    }


@router.patch(
    "/devices/{device_id}", responses=error_responses(404),
    summary="Change the fields given; the others and the token stay",
)
async def update(device_id: DeviceIdInPath, body: DeviceFieldsIn, db: PrimaryDbDep, _: AdminDep) -> dict[str, Any]:
    try:
        await update_device_async(db, device_id, body.fields())
    except (ValueError, DeviceNotFound) as exc:
        raise _refused(exc) from None
    return {"device_id": device_id, "updated": sorted(body.model_dump(exclude_none=True))}


@router.post(
    "/devices/{device_id}/retire", responses=error_responses(404),
    summary="Retire a device (its data stays; the gateway hears at once)",
)
async def retire(device_id: DeviceIdInPath, db: PrimaryDbDep, _: AdminDep) -> dict[str, Any]:
    try:
        retired_at = await retire_device_async(db, device_id)
    except (ValueError, DeviceNotFound) as exc:
        raise _refused(exc) from None
    return {"device_id": device_id, "retired_at": retired_at}


@router.get("/rejected", summary="Dead letters: messages the gateway refused, with the reason")
async def rejected(
    db: DbDep, _: AdminDep, limit: int = Query(100, ge=1, le=10_000),
    reason: str | None = Query(None, max_length=200, pattern=NO_NUL),
) -> dict[str, Any]:
    where, args = "", []
    if reason:
        where = "WHERE reason ILIKE %s"
        args.append(f"%{reason}%")
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT received_at, topic, reason, coalesce(payload_bytes, length(payload)) AS bytes, "
            f"encode(substring(payload FROM 1 FOR 200), 'escape') AS payload_start "
            f"FROM rejected_messages {where} ORDER BY received_at DESC LIMIT %s".encode(),
            [*args, limit],
        )
        rows = await cur.fetchall()
    return {"meta": {"found": len(rows), "limit": limit}, "results": rows}
