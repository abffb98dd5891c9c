"""Every write to `devices`, in one module: registration, update, retirement, auto-registration.

Three callers, three drivers, one SQL text per kind of write:
- the CLI (`citysense device ...`) and the dev tools (demo fleet, benches) with a sync
  psycopg connection of their own;
- the API (`POST /v1/devices`, `PATCH /v1/devices/{id}`, `POST /v1/devices/{id}/retire`)
  with an async psycopg connection from its pool;
- the gateway's batch writer (asyncpg), which registers unknown ids of an open network as
  unregistered inside its batch transaction (`auto_register`).
The sync and async psycopg functions share the SQL constants and `_checked`, so the CLI and
the API give identical rows for the same input.

Rules, each written here only:
- a field given as None keeps what is stored (a new device gets the default: kind `airbox`,
  sensor type `pms5003` for an air box);
- registering an id the gateway auto-registered claims it (its data stays); registering an
  id that is registered already is refused unless `rotate_token` asks for a new token, and
  rotation changes nothing but the token (and the fields given);
- each write commits before the function returns, so whoever answers "registered" can
  be believed by the next read and by the gateway, which hears of it through the
  NOTIFY trigger of migration 0003 (see `gateway/device_registry.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import psycopg
from psycopg.pq import TransactionStatus

from contracts.ids import KINDS, V1_DEVICE_ID, check_dev_eui, reserved_id_reason
from ingest.broker_files import mosquitto_hash


class DeviceRegisteredAlready(Exception):
    """Re-registration of a registered id without `rotate_token`: its token stays valid."""

    def __init__(self, device_id: str) -> None:
        super().__init__(
            f"device {device_id!r} is registered already; its token stays valid. "
            "Ask for a new token explicitly (CLI --rotate-token, API \"rotate_token\": true)"
        )
        self.device_id = device_id


class DeviceNotFound(LookupError):
    """An update or retirement of an id that `devices` does not hold."""

    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device {device_id!r}")
        self.device_id = device_id


@dataclass(frozen=True, slots=True)
class DeviceFields:
    """Owner data of a device. None keeps the stored value (or takes the default when new)."""

    kind: str | None = None
    name: str | None = None
    site: str | None = None
    school: str | None = None
    lat: float | None = None
    lon: float | None = None
    sensor_type: str | None = None
    owner: str | None = None
    city: str | None = None  # where it stands, for the open interfaces (SensorThings Thing properties)
    district: str | None = None
    authority: str | None = None
    dev_eui: str | None = None  # a LoRaWAN sensor's EUI-64: ChirpStack uplinks of that EUI are this device's


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registration did: `created` is False when an existing id was claimed or rotated."""

    device_id: str
    kind: str
    created: bool


@dataclass(slots=True)
class NewDevice:
    """An id the gateway met first in this batch (open network): stored as unregistered."""

    device_id: str
    kind: str
    lat: float | None = None
    lon: float | None = None


NO_SENSOR_TYPE = "none"
"""The sensor type that says "this device has none" (a reference station, a parking sensor): stored as NULL,
so no type default calibration applies. None (not given) keeps what is stored; an empty string is refused."""

KEPT_WHEN_NONE = ("name", "site", "school", "lat", "lon", "owner", "city", "district", "authority", "dev_eui")
"""Owner fields a registration or update changes only when given (None keeps what is stored)."""
_KEEP_OR_SET = ",\n".join(f"    {f} = coalesce(%({f})s, d.{f})" for f in KEPT_WHEN_NONE)

# psycopg (sync and async): named parameters, so each value is passed once and read twice
_REGISTER = f"""
INSERT INTO devices AS d (device_id, kind, {", ".join(KEPT_WHEN_NONE)}, sensor_type, token_hash, registered)
VALUES (%(device_id)s, coalesce(%(kind)s, 'airbox'), {", ".join(f"%({f})s" for f in KEPT_WHEN_NONE)},
        nullif(coalesce(%(sensor_type)s, CASE WHEN coalesce(%(kind)s, 'airbox') = 'airbox' THEN 'pms5003' END),
               '{NO_SENSOR_TYPE}'),
        %(token_hash)s, true)
ON CONFLICT (device_id) DO UPDATE SET
    kind = coalesce(%(kind)s, d.kind),
{_KEEP_OR_SET},
    sensor_type = nullif(coalesce(%(sensor_type)s, d.sensor_type,
                                  CASE WHEN coalesce(%(kind)s, d.kind) = 'airbox' THEN 'pms5003' END),
                         '{NO_SENSOR_TYPE}'),
    token_hash = EXCLUDED.token_hash,
    registered = true,
    retired_at = NULL
WHERE NOT d.registered OR %(rotate_token)s
RETURNING d.kind, (d.xmax = 0) AS created
"""

_UPDATE = f"""
UPDATE devices AS d SET
    kind = coalesce(%(kind)s, d.kind),
{_KEEP_OR_SET},
    sensor_type = nullif(coalesce(%(sensor_type)s, d.sensor_type), '{NO_SENSOR_TYPE}')
WHERE d.device_id = %(device_id)s
RETURNING d.device_id
"""

# a retired device gives up its LoRaWAN EUI, so the board can serve another device (its uplinks
# already stored keep the EUI in lorawan_uplinks)
_RETIRE = """
UPDATE devices SET retired_at = coalesce(retired_at, now()), dev_eui = NULL WHERE device_id = %(device_id)s
RETURNING retired_at
"""

# asyncpg, inside the gateway's batch transaction: a new id is unregistered; a known one
# only gains a position it lacked (the first LASS line with GPS), nothing else changes
_AUTO_REGISTER = """
INSERT INTO devices (device_id, kind, lat, lon, registered)
SELECT d, k, la, lo, false FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[]) AS u(d, k, la, lo)
ON CONFLICT (device_id) DO UPDATE
   SET lat = COALESCE(devices.lat, EXCLUDED.lat), lon = COALESCE(devices.lon, EXCLUDED.lon)
   WHERE devices.lat IS NULL AND EXCLUDED.lat IS NOT NULL
"""


def new_token() -> str:
    """A device's MQTT password: 32 URL-safe characters, shown once, stored only hashed."""
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    """Mosquitto's own hash of the device token, so the broker's password file is an export."""
    return mosquitto_hash(token)


def _check_id(device_id: str) -> None:
    if not V1_DEVICE_ID.match(device_id):
        raise ValueError(f"device id {device_id!r} must match [a-z0-9-]{{3,64}}")
    reserved = reserved_id_reason(device_id)
    if reserved is not None:
        raise ValueError(reserved)


def _checked(device_id: str, fields: DeviceFields) -> dict[str, Any]:
    """The parameters of a registration or update, or ValueError with the reason."""
    _check_id(device_id)
    if fields.kind is not None and fields.kind not in KINDS:
        raise ValueError(f"kind must be airbox or parking, got {fields.kind!r}")
    if (fields.lat is None) != (fields.lon is None):
        raise ValueError("give both lat and lon, or neither")
    if fields.lat is not None and not -90 <= fields.lat <= 90:
        raise ValueError(f"lat must be within -90..90, got {fields.lat}")
    if fields.lon is not None and not -180 <= fields.lon <= 180:
        raise ValueError(f"lon must be within -180..180, got {fields.lon}")
    if fields.sensor_type is not None and not fields.sensor_type.strip():
        raise ValueError(f"sensor_type must not be empty; say {NO_SENSOR_TYPE!r} for a device without one")
    for name in ("sensor_type", *KEPT_WHEN_NONE):
        value = getattr(fields, name)
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{name} must not contain a NUL character")
    params = {"device_id": device_id, **dataclasses.asdict(fields)}
    if fields.dev_eui is not None:
        params["dev_eui"] = check_dev_eui(fields.dev_eui)
    return params


_DEV_EUI_KEY = "devices_dev_eui_key"  # migration 0012


@contextlib.contextmanager
def _dev_eui_unique(params: dict[str, Any]) -> Iterator[None]:
    """A devEui another device holds already is refused with a sentence, not a constraint name."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        if exc.diag.constraint_name != _DEV_EUI_KEY:
            raise
        raise ValueError(f"devEui {params['dev_eui']} belongs to another device already (one LoRaWAN sensor "
                         "is one device): give that device another EUI, or retire it first") from None


async def _commit(conn: psycopg.AsyncConnection[Any]) -> None:
    """Commit what is open on a pooled connection (a request's own `SET LOCAL`, say): the write
    inside it must be committed before the caller answers, not when the pool takes it back."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        await conn.commit()


def _registration(device_id: str, row: tuple[Any, ...] | None) -> Registration:
    if row is None:
        raise DeviceRegisteredAlready(device_id)
    return Registration(device_id, str(row[0]), bool(row[1]))


def _register_params(device_id: str, fields: DeviceFields, token: str, rotate_token: bool) -> dict[str, Any]:
    return {**_checked(device_id, fields), "token_hash": token_hash(token), "rotate_token": rotate_token}


def register_device(
    database_url: str, *, device_id: str, token: str, rotate_token: bool = False, kind: str | None = None,
    name: str | None = None, site: str | None = None, school: str | None = None, lat: float | None = None,
    lon: float | None = None, sensor_type: str | None = None, owner: str | None = None, city: str | None = None,
    district: str | None = None, authority: str | None = None, dev_eui: str | None = None,
) -> Registration:
    """Create or claim a device with a new token, committed on return (the CLI's path)."""
    fields = DeviceFields(kind, name, site, school, lat, lon, sensor_type, owner, city, district, authority, dev_eui)
    params = _register_params(device_id, fields, token, rotate_token)
    with _dev_eui_unique(params), psycopg.connect(database_url) as conn:
        row = conn.execute(_REGISTER, params).fetchone()
    return _registration(device_id, row)


def register_devices(
    database_url: str, devices: Sequence[tuple[str, DeviceFields]], *, rotate_token: bool = False
) -> list[tuple[Registration, str]]:
    """Register many devices in one transaction (a fleet at install, the demo, the bench),
    each with a new token; the same rules and SQL as `register_device`, all or none."""
    tokens = [new_token() for _ in devices]
    params = [_register_params(d, f, t, rotate_token) for (d, f), t in zip(devices, tokens, strict=True)]
    done: list[tuple[Registration, str]] = []
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(_REGISTER, params, returning=True)
        for (device_id, _fields), token in zip(devices, tokens, strict=True):
            done.append((_registration(device_id, cur.fetchone()), token))
            cur.nextset()
    return done


async def register_device_async(
    conn: psycopg.AsyncConnection[Any], device_id: str, fields: DeviceFields, token: str, *,
    rotate_token: bool = False,
) -> Registration:
    """`register_device` on a pooled connection (the API's path): committed before it returns."""
    params = _register_params(device_id, fields, token, rotate_token)
    with _dev_eui_unique(params):
        async with conn.transaction():
            cur = await conn.execute(_REGISTER, params)
        row = await cur.fetchone()
    await _commit(conn)
    return _registration(device_id, row)


def update_device(database_url: str, device_id: str, fields: DeviceFields) -> None:
    """Change only the fields given; the token and registration state stay."""
    params = _checked(device_id, fields)
    with _dev_eui_unique(params), psycopg.connect(database_url) as conn:
        if conn.execute(_UPDATE, params).fetchone() is None:
            raise DeviceNotFound(device_id)


async def update_device_async(conn: psycopg.AsyncConnection[Any], device_id: str, fields: DeviceFields) -> None:
    """`update_device` on a pooled connection, committed before it returns."""
    params = _checked(device_id, fields)
    with _dev_eui_unique(params):
        async with conn.transaction():
            cur = await conn.execute(_UPDATE, params)
        found = await cur.fetchone()
    await _commit(conn)
    if found is None:
        raise DeviceNotFound(device_id)


def retire_device(database_url: str, device_id: str) -> datetime:
    """Mark a device retired (its rows stay; the broker files and the map leave it out)."""
    _check_id(device_id)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(_RETIRE, {"device_id": device_id}).fetchone()
    if row is None:
        raise DeviceNotFound(device_id)
    retired_at: datetime = row[0]
    return retired_at


async def retire_device_async(conn: psycopg.AsyncConnection[Any], device_id: str) -> datetime:
    """`retire_device` on a pooled connection, committed before it returns."""
    _check_id(device_id)
    async with conn.transaction():
        cur = await conn.execute(_RETIRE, {"device_id": device_id})
        row = await cur.fetchone()
    await _commit(conn)
    if row is None:
        raise DeviceNotFound(device_id)
    retired_at: datetime = row[0]
    return retired_at


async def auto_register(conn: asyncpg.Connection, devices: Sequence[NewDevice]) -> None:
    """Store ids first met by the gateway as unregistered, inside the caller's batch transaction."""
    if devices:
        await conn.execute(
            _AUTO_REGISTER, [d.device_id for d in devices], [d.kind for d in devices],
            [d.lat for d in devices], [d.lon for d in devices],
        )
