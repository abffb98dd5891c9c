"""Database side of calibration: model versions in `calibrations`, re-calibration of `readings`.

Uses psycopg 3 (sync): these are operator tasks run from the CLI, not the hot path.

Re-calibration guarantees, implemented in `recalibrate`:

* `raw` is never written; `value` and `calibration_id` are recomputed from `raw` (and the
  sensor's own `rh` row at the same timestamp, for models that need RH).
* Work goes in batches of `batch_size` rows in time order, each committed on its own, so an
  interrupted run leaves a consistent prefix and simply continues when run again.
* Idempotent: a row is only updated when its value or calibration id would change, so a
  second run over the same range reports zero changed rows.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from calibration.models import default_model, parse_model
from calibration.series import HourlySeries, to_datetime64
from calibration.versions import CalibrationRecord, resolve

BATCH_SIZE_DEFAULT = 5000


class StoreError(RuntimeError):
    """A database-side calibration task cannot proceed (unknown device, bad stored model)."""


@dataclass(frozen=True)
class DeviceInfo:
    """What calibration needs to know about a device."""

    device_id: str
    kind: str
    sensor_type: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class RecalibrationReport:
    """Outcome of one `recalibrate` run."""

    device_id: str
    metric: str
    rows_seen: int
    rows_changed: int
    first: datetime | None
    last: datetime | None
    calibration_ids: tuple[int, ...]
    aggregates_refreshed: bool


_RECORD_COLUMNS = """
    id, device_id, sensor_type, metric, model,
    nullif(valid_from, '-infinity'::timestamptz) AS valid_from,
    nullif(valid_to, 'infinity'::timestamptz) AS valid_to,
    fitted_at, fit_stats
"""


def _record(row: dict[str, Any]) -> CalibrationRecord:
    return CalibrationRecord(
        id=row["id"],
        device_id=row["device_id"],
        sensor_type=row["sensor_type"],
        metric=row["metric"],
        model=row["model"],
        valid_from=row["valid_from"],
        valid_to=row["valid_to"],
        fitted_at=row["fitted_at"],
        fit_stats=row["fit_stats"],
    )


def get_device(conn: psycopg.Connection[Any], device_id: str) -> DeviceInfo:
    """The device row, or StoreError naming the unknown id."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT device_id, kind, sensor_type, lat, lon FROM devices WHERE device_id = %s", (device_id,)
        )
        row = cur.fetchone()
    if row is None:
        raise StoreError(f"unknown device {device_id!r} (not in the devices table)")
    return DeviceInfo(**row)


def list_devices(conn: psycopg.Connection[Any], kinds: Sequence[str] = ("airbox", "lass")) -> list[DeviceInfo]:
    """Devices of the given kinds that are not retired."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT device_id, kind, sensor_type, lat, lon FROM devices "
            "WHERE kind = ANY(%s) AND retired_at IS NULL ORDER BY device_id",
            (list(kinds),),
        )
        return [DeviceInfo(**row) for row in cur.fetchall()]


def insert_calibration(
    conn: psycopg.Connection[Any],
    *,
    metric: str,
    model: dict[str, Any],
    device_id: str | None = None,
    sensor_type: str | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    fit_stats: dict[str, Any] | None = None,
) -> int:
    """Store a model version and return its id; the spec is validated first.

    A device model with a start closes the device's open-ended earlier versions at that
    start, so history reads as a clean sequence of periods.
    """
    spec = parse_model(model).to_spec()
    if device_id is None and sensor_type is None:
        raise StoreError("a calibration needs a device_id or, for a default, a sensor_type")
    with conn.cursor() as cur:
        if device_id is not None and valid_from is not None:
            cur.execute(
                "UPDATE calibrations SET valid_to = %s WHERE device_id = %s AND metric = %s "
                "AND valid_to IS NULL AND valid_from < %s",
                (valid_from, device_id, metric, valid_from),
            )
        cur.execute(
            "INSERT INTO calibrations (device_id, sensor_type, metric, model, valid_from, valid_to, fit_stats) "
            "VALUES (%s, %s, %s, %s, coalesce(%s, '-infinity'::timestamptz), %s, %s) RETURNING id",
            (
                device_id,
                sensor_type,
                metric,
                Jsonb(spec),
                valid_from,
                valid_to,
                Jsonb(fit_stats) if fit_stats is not None else None,
            ),
        )
        row = cur.fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def list_calibrations(conn: psycopg.Connection[Any], device_id: str | None = None) -> list[CalibrationRecord]:
    """All versions (or one device's), oldest first."""
    query = f"SELECT {_RECORD_COLUMNS} FROM calibrations"
    params: tuple[Any, ...] = ()
    if device_id is not None:
        query += " WHERE device_id = %s"
        params = (device_id,)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query + " ORDER BY id", params)
        return [_record(row) for row in cur.fetchall()]


def records_for(conn: psycopg.Connection[Any], device: DeviceInfo, metric: str) -> list[CalibrationRecord]:
    """The device's own versions and its sensor type's defaults for one metric."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_RECORD_COLUMNS} FROM calibrations WHERE metric = %s AND "
            "(device_id = %s OR (device_id IS NULL AND sensor_type = %s)) ORDER BY id",
            (metric, device.device_id, device.sensor_type),
        )
        return [_record(row) for row in cur.fetchall()]


def ensure_default_calibration(conn: psycopg.Connection[Any], sensor_type: str | None, metric: str) -> int | None:
    """Id of the sensor type's default row, inserting the built-in default if there is none.

    Storing the built-in default gives every re-calibrated row a `calibration_id`, so a
    bureau can always say which equation produced a published number.
    """
    spec = default_model(sensor_type, metric)
    if sensor_type is None or spec is None:
        return None
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM calibrations WHERE device_id IS NULL AND sensor_type = %s AND metric = %s "
            "ORDER BY id LIMIT 1",
            (sensor_type, metric),
        )
        row = cur.fetchone()
    if row is not None:
        return int(row[0])
    return insert_calibration(conn, metric=metric, model=spec, sensor_type=sensor_type)


def hourly_series(
    conn: psycopg.Connection[Any], device_id: str, start: datetime, end: datetime, column: str = "raw"
) -> HourlySeries:
    """Hourly means of `raw` or `value` for pm25 (and rh) in [start, end), UTC hour-start labels."""
    if column not in ("raw", "value"):
        raise ValueError(f"column must be 'raw' or 'value', got {column!r}")
    query = sql.SQL(
        "SELECT date_trunc('hour', time) AS hour, metric, avg({col}) AS mean FROM readings "
        "WHERE device_id = %s AND metric IN ('pm25', 'rh') AND time >= %s AND time < %s "
        "GROUP BY 1, 2 ORDER BY 1"
    ).format(col=sql.Identifier(column))
    with conn.cursor() as cur:
        cur.execute(query, (device_id, start, end))
        rows = cur.fetchall()
    by_hour: dict[np.datetime64, dict[str, float]] = {}
    for hour, metric, mean in rows:
        by_hour.setdefault(to_datetime64(hour), {})[metric] = math.nan if mean is None else float(mean)
    times = np.array(sorted(by_hour), dtype="datetime64[s]")
    pm25 = np.array([by_hour[t].get("pm25", math.nan) for t in times], dtype=np.float64)
    rh = np.array([by_hour[t].get("rh", math.nan) for t in times], dtype=np.float64)
    return HourlySeries(times=times, pm25=pm25, rh=rh if bool(np.isfinite(rh).any()) else None)


def refresh_aggregates(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> bool:
    """Refresh the hourly/daily aggregates over [start, end) if the ingest stage offers it."""
    if importlib.util.find_spec("ingest.aggregates") is None:
        return False
    module = importlib.import_module("ingest.aggregates")
    refresh: Callable[[psycopg.Connection[Any], datetime, datetime], object] | None = getattr(
        module, "refresh_range", None
    )
    if not callable(refresh):
        return False
    conn.commit()
    refresh(conn, start, end)
    return True


_SELECT_BATCH = """
SELECT p.time, p.raw, coalesce(h.raw, h.value) AS rh
FROM readings AS p
LEFT JOIN readings AS h ON h.device_id = p.device_id AND h.metric = 'rh' AND h.time = p.time
WHERE p.device_id = %(device)s AND p.metric = %(metric)s AND p.raw IS NOT NULL
  AND p.time >= %(since)s AND p.time > %(after)s AND (%(until)s::timestamptz IS NULL OR p.time < %(until)s)
ORDER BY p.time
LIMIT %(limit)s
"""

_UPDATE_BATCH = """
UPDATE readings AS r SET value = u.value, calibration_id = u.cid
FROM unnest(%(times)s::timestamptz[], %(values)s::float8[], %(cids)s::int4[]) AS u(time, value, cid)
WHERE r.device_id = %(device)s AND r.metric = %(metric)s AND r.time = u.time
  AND (r.value IS DISTINCT FROM u.value OR r.calibration_id IS DISTINCT FROM u.cid)
"""


def count_rows(
    conn: psycopg.Connection[Any], device_id: str, metric: str, since: datetime, until: datetime | None
) -> int:
    """Rows with a raw value in range (for the progress bar)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM readings WHERE device_id = %s AND metric = %s AND raw IS NOT NULL "
            "AND time >= %s AND (%s::timestamptz IS NULL OR time < %s)",
            (device_id, metric, since, until, until),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def recalibrate(
    conn: psycopg.Connection[Any],
    device_id: str,
    since: datetime,
    until: datetime | None = None,
    *,
    metric: str = "pm25",
    batch_size: int = BATCH_SIZE_DEFAULT,
    progress: Callable[[int], None] | None = None,
) -> RecalibrationReport:
    """Recompute `value` from `raw` for one device's rows in [since, until); see the module doc."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    device = get_device(conn, device_id)
    ensure_default_calibration(conn, device.sensor_type, metric)
    records = records_for(conn, device, metric)
    models = {}
    for record in records:
        try:
            models[record.id] = record.parsed()
        except ValueError as exc:
            raise StoreError(f"calibration {record.id} has a malformed model: {exc}") from exc
    after = since - timedelta(microseconds=1)
    seen = changed = 0
    first: datetime | None = None
    last: datetime | None = None
    used: set[int] = set()
    while True:
        with conn.cursor() as cur:
            cur.execute(
                _SELECT_BATCH,
                {"device": device_id, "metric": metric, "since": since, "after": after, "until": until, "limit": batch_size},
            )
            rows = cur.fetchall()
        if not rows:
            break
        times = [row[0] for row in rows]
        raw = np.array([row[1] for row in rows], dtype=np.float64)
        rh = np.array([math.nan if row[2] is None else row[2] for row in rows], dtype=np.float64)
        stamps = np.array([to_datetime64(t) for t in times], dtype="datetime64[s]")
        which = resolve(records, device_id, device.sensor_type, metric, stamps)
        values = raw.copy()
        cids: list[int | None] = [None] * len(rows)
        for index in np.unique(which):
            mask = which == index
            if index < 0:
                values[mask] = np.maximum(raw[mask], 0.0)
                continue
            record = records[int(index)]
            values[mask] = models[record.id].apply(raw[mask], rh[mask])
            used.add(record.id)
            for position in np.flatnonzero(mask):
                cids[int(position)] = record.id
        out = [None if not math.isfinite(v) else float(v) for v in values]
        with conn.cursor() as cur:
            cur.execute(
                _UPDATE_BATCH,
                {"times": times, "values": out, "cids": cids, "device": device_id, "metric": metric},
            )
            changed += cur.rowcount
        conn.commit()
        seen += len(rows)
        first = first or times[0]
        last = times[-1]
        after = times[-1]
        if progress is not None:
            progress(len(rows))
    refreshed = False
    if first is not None and last is not None:
        refreshed = refresh_aggregates(conn, first, last + timedelta(seconds=1))
    return RecalibrationReport(
        device_id=device_id,
        metric=metric,
        rows_seen=seen,
        rows_changed=changed,
        first=first,
        last=last,
        calibration_ids=tuple(sorted(used)),
        aggregates_refreshed=refreshed,
    )
