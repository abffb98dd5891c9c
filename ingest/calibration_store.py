"""Database side of calibration: model versions in `calibrations`, re-calibration of `readings`.

Uses psycopg 3 (sync): these are operator tasks run from the CLI, not the hot path.

Re-calibration guarantees, implemented in `recalibrate`:

* `raw` is never written; `value` and `calibration_id` are recomputed from `raw`, `flags`
  (and the sensor's own `rh` row at the same timestamp, for models that need RH) by the
  same engine the gateway runs on live data (`calibration.engine`), so re-applying an
  unchanged calibration to what the gateway stored changes nothing.
* Work goes in batches of `batch_size` rows in time order, each committed on its own, so an
  interrupted run leaves a consistent prefix and simply continues when run again.
* Idempotent: a row is only updated when its value or calibration id would change, so a
  second run over the same range reports zero changed rows.
* Afterwards, if any row changed, the hourly and daily aggregates are refreshed over the
  days touched (`ingest.aggregates.refresh_range`), so the API and dashboards agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from calibration.engine import EngineRow, ModelVersion, calibrate_device, humidity_input
from calibration.models import CalibrationModelError, default_model, parse_model
from calibration.series import HourlySeries, to_datetime64
from ingest.aggregates import refresh_range

BATCH_SIZE_DEFAULT = 5000


class StoreError(RuntimeError):
    """A database-side calibration task cannot proceed (unknown device, bad stored model)."""


@dataclass(frozen=True)
class CalibrationRecord:
    """One row of the `calibrations` table (unbounded validity ends as None)."""

    id: int
    device_id: str | None
    sensor_type: str | None
    metric: str
    model: dict[str, Any]
    valid_from: datetime | None
    valid_to: datetime | None
    fitted_at: datetime | None = None
    fit_stats: dict[str, Any] | None = None

    def version(self) -> ModelVersion:
        """The engine's view of this row; CalibrationModelError for a malformed stored spec."""
        return ModelVersion(
            id=self.id,
            metric=self.metric,
            model=parse_model(self.model),
            valid_from=self.valid_from.timestamp() if self.valid_from else -math.inf,
            valid_to=self.valid_to.timestamp() if self.valid_to else math.inf,
        )


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
    aggregates_backend: str | None

    def as_json(self) -> dict[str, Any]:
        """The `calibrate apply --json` object (docs/calibration.md lists the fields)."""
        return {
            "device_id": self.device_id,
            "metric": self.metric,
            "rows_seen": self.rows_seen,
            "rows_changed": self.rows_changed,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "calibration_ids": list(self.calibration_ids),
            "aggregates_refreshed": self.aggregates_backend,
        }


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


@dataclass(frozen=True)
class CalibrationState:
    """What the gateway caches: stored versions by device and by sensor type, and device types."""

    sensor_types: dict[str, str]
    device_records: dict[str, list[CalibrationRecord]]
    type_records: dict[str, list[CalibrationRecord]]


def load_calibration_state(conn: psycopg.Connection[Any], device_ids: Sequence[str] | None = None) -> CalibrationState:
    """Every version that can apply to `device_ids` (None: to every device), oldest id first.

    The built-in default of each sensor type in use is stored first (`ensure_default_calibration`,
    as `recalibrate` does), so live readings carry the same calibration id as history.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT device_id, sensor_type FROM devices WHERE sensor_type IS NOT NULL "
            "AND (%(ids)s::text[] IS NULL OR device_id = ANY(%(ids)s::text[]))",
            {"ids": None if device_ids is None else list(device_ids)},
        )
        sensor_types: dict[str, str] = {row[0]: row[1] for row in cur.fetchall()}
    for sensor_type in sorted(set(sensor_types.values())):
        ensure_default_calibration(conn, sensor_type, "pm25")
    query = f"SELECT {_RECORD_COLUMNS} FROM calibrations"
    params: dict[str, Any] = {}
    if device_ids is not None:
        query += " WHERE device_id = ANY(%(ids)s) OR (device_id IS NULL AND sensor_type = ANY(%(types)s))"
        params = {"ids": list(device_ids), "types": sorted(set(sensor_types.values()))}
    device_records: dict[str, list[CalibrationRecord]] = {}
    type_records: dict[str, list[CalibrationRecord]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query + " ORDER BY id", params)
        for row in cur.fetchall():
            record = _record(row)
            if record.device_id is not None:
                device_records.setdefault(record.device_id, []).append(record)
            elif record.sensor_type is not None:
                type_records.setdefault(record.sensor_type, []).append(record)
    return CalibrationState(sensor_types, device_records, type_records)


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


def refresh_aggregates(conn: psycopg.Connection[Any], first: datetime, last: datetime) -> str:
    """Refresh readings_1h/readings_1d over whole UTC days covering [first, last]; returns the backend.

    Whole days because TimescaleDB only refreshes buckets lying entirely inside the window,
    and the daily aggregate's buckets are days. The refresh must run outside a transaction.
    """
    start = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = last.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    conn.commit()
    previous = conn.autocommit
    conn.autocommit = True
    try:
        return refresh_range(conn, start, end)
    finally:
        conn.autocommit = previous


_SELECT_BATCH = """
SELECT p.time, p.raw, p.flags, h.raw AS rh_raw, h.flags AS rh_flags
FROM readings AS p
LEFT JOIN readings AS h ON h.device_id = p.device_id AND h.metric = 'rh' AND h.time = p.time
WHERE p.device_id = %(device)s AND p.metric = %(metric)s AND p.raw IS NOT NULL
  AND p.time >= %(since)s AND p.time > %(after)s AND (%(until)s::timestamptz IS NULL OR p.time < %(until)s)
ORDER BY p.time
LIMIT %(limit)s
"""

_UPDATE_BATCH = """
UPDATE readings AS r SET value = u.value, calibration_id = u.cid
FROM unnest(%(times)b::timestamptz[], %(values)b::float8[], %(cids)b::int4[]) AS u(time, value, cid)
WHERE r.device_id = %(device)s AND r.metric = %(metric)s AND r.time = u.time
  AND r.time BETWEEN %(lo)s AND %(hi)s
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


def recalibrated(
    rows: Sequence[tuple[Any, ...]], metric: str, own: Sequence[ModelVersion], defaults: Sequence[ModelVersion]
) -> tuple[list[float | None], list[int | None]]:
    """New values and calibration ids of one device's `_SELECT_BATCH` rows (time, raw, flags,
    rh raw, rh flags) of one metric: the engine, given its versions and its type's defaults."""
    engine_rows: list[EngineRow] = [
        (at.timestamp(), metric, raw, flags, humidity_input(rh_raw, rh_flags or 0))
        for at, raw, flags, rh_raw, rh_flags in rows
    ]
    calibrated = calibrate_device(engine_rows, own, defaults)
    return [value for value, _ in calibrated], [cid for _, cid in calibrated]


def model_versions(records: Sequence[CalibrationRecord]) -> list[ModelVersion]:
    """The engine's versions of stored rows, or StoreError naming a malformed one."""
    versions = []
    for record in records:
        try:
            versions.append(record.version())
        except CalibrationModelError as exc:
            raise StoreError(f"calibration {record.id} has a malformed model: {exc}") from exc
    return versions


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
    own = model_versions([r for r in records if r.device_id == device_id])
    defaults = model_versions([r for r in records if r.device_id is None])
    after = since - timedelta(microseconds=1)
    seen = changed = 0
    first: datetime | None = None
    last: datetime | None = None
    used: set[int] = set()
    while True:
        with conn.cursor() as cur:
            params = {"device": device_id, "metric": metric, "since": since, "after": after, "until": until}
            cur.execute(_SELECT_BATCH, {**params, "limit": batch_size}, prepare=False)
            rows = cur.fetchall()
        if not rows:
            break
        times = [row[0] for row in rows]
        out, cids = recalibrated(rows, metric, own, defaults)
        used.update(cid for cid in cids if cid is not None)
        with conn.cursor() as cur:
            cur.execute(
                _UPDATE_BATCH,
                {
                    "times": times,
                    "values": out,
                    "cids": cids,
                    "device": device_id,
                    "metric": metric,
                    "lo": times[0],
                    "hi": times[-1],
                },
                prepare=False,
            )
            changed += cur.rowcount
        conn.commit()
        seen += len(rows)
        first = first or times[0]
        last = times[-1]
        after = times[-1]
        if progress is not None:
            progress(len(rows))
    backend = None
    if changed and first is not None and last is not None:
        backend = refresh_aggregates(conn, first, last)
    return RecalibrationReport(
        device_id=device_id,
        metric=metric,
        rows_seen=seen,
        rows_changed=changed,
        first=first,
        last=last,
        calibration_ids=tuple(sorted(used)),
        aggregates_backend=backend,
    )
