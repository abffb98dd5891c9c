"""Device registration: the only place that writes owner data into `devices`."""

from __future__ import annotations

import psycopg

from contracts.ids import KINDS, V1_DEVICE_ID
from ingest.broker_files import mosquitto_hash


def token_hash(token: str) -> str:
    """Mosquitto's own hash of the device token, so the broker's password file is an export."""
    return mosquitto_hash(token)


def register_device(
    database_url: str, *, device_id: str, kind: str, name: str | None, school: str | None,
    lat: float | None, lon: float | None, sensor_type: str | None, owner: str | None, token: str,
) -> None:
    """Create or claim a device (an auto-registered id becomes registered, keeping its data)."""
    if not V1_DEVICE_ID.match(device_id):
        raise ValueError(f"device id {device_id!r} must match [a-z0-9-]{{3,64}}")
    if kind not in KINDS:
        raise ValueError(f"kind must be airbox or parking, got {kind!r}")
    if (lat is None) != (lon is None):
        raise ValueError("give both --lat and --lon, or neither")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind, name, school, lat, lon, sensor_type, owner, token_hash, registered) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, true) ON CONFLICT (device_id) DO UPDATE SET "
            "kind = EXCLUDED.kind, name = coalesce(EXCLUDED.name, devices.name), "
            "school = coalesce(EXCLUDED.school, devices.school), lat = coalesce(EXCLUDED.lat, devices.lat), "
            "lon = coalesce(EXCLUDED.lon, devices.lon), sensor_type = EXCLUDED.sensor_type, "
            "owner = EXCLUDED.owner, token_hash = EXCLUDED.token_hash, registered = true, retired_at = NULL",
            (device_id, kind, name, school, lat, lon, sensor_type, owner, token_hash(token)),
        )
