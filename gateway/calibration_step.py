"""Apply the active calibration to each batch, vectorised per (device, metric) with numpy.

Which model applies: the device's own newest active row in `calibrations`, else the
default row for its sensor type (device_id NULL), else identity (value = raw, no id).
Models needing humidity take the `rh` of the same device and time from the same batch.
The gateway keeps the models in memory and reloads them every `refresh_s`, so a newly
fitted model reaches live data within a minute without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import asyncpg
import numpy as np
import orjson
import psycopg

from calibration.models import CalibrationModelError, Model, parse_model
from contracts.records import ReadingRow
from ingest.calibration_store import ensure_default_calibration

log = logging.getLogger(__name__)

_ACTIVE = """
SELECT id, device_id, sensor_type, metric, model::text AS model
FROM calibrations
WHERE valid_from <= now() AND (valid_to IS NULL OR valid_to > now())
ORDER BY valid_from, id
"""


class Calibrator:
    def __init__(self, database_url: str, refresh_s: float = 60.0) -> None:
        self.database_url = database_url
        self.refresh_s = refresh_s
        self.by_device: dict[tuple[str, str], tuple[int, Model]] = {}
        self.by_type: dict[tuple[str, str], tuple[int, Model]] = {}
        self.sensor_type: dict[str, str] = {}
        self._found: dict[tuple[str, str], tuple[int, Model] | None] = {}  # model_for, memoised
        self._loaded_at = 0.0
        self._forgotten = False  # set by `forget`: a change was notified, reload before the next batch

    async def refresh(self) -> None:
        await asyncio.to_thread(self._ensure_type_defaults, self.database_url)
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(_ACTIVE)
            types = await conn.fetch("SELECT device_id, sensor_type FROM devices WHERE sensor_type IS NOT NULL")
        finally:
            await conn.close()
        by_device: dict[tuple[str, str], tuple[int, Model]] = {}
        by_type: dict[tuple[str, str], tuple[int, Model]] = {}
        for r in rows:
            try:
                model = parse_model(orjson.loads(r["model"]))
            except CalibrationModelError as exc:
                log.error("event=calibration_invalid id=%s error=%r (ignored)", r["id"], str(exc))
                continue
            if r["device_id"] is not None:
                by_device[(r["device_id"], r["metric"])] = (r["id"], model)
            elif r["sensor_type"] is not None:
                by_type[(r["sensor_type"], r["metric"])] = (r["id"], model)
        self.by_device, self.by_type = by_device, by_type
        self.sensor_type = {r["device_id"]: r["sensor_type"] for r in types}
        self._found = {}
        self._loaded_at = time.monotonic()

    @staticmethod
    def _ensure_type_defaults(database_url: str) -> None:
        """Store the built-in default of each sensor type in use (the same rule and code path
        as `citysense calibrate apply`), so live readings carry a calibration id too."""
        with psycopg.connect(database_url) as conn:
            types = conn.execute("SELECT DISTINCT sensor_type FROM devices WHERE sensor_type IS NOT NULL").fetchall()
            for (sensor_type,) in types:
                ensure_default_calibration(conn, sensor_type, "pm25")

    async def refresh_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            await self.refresh()

    def forget(self, device_id: str | None) -> None:
        """A device's registration or calibration changed (None: any device's): drop the
        memoised model lookups; `reload_forgotten` reloads the models before the next batch."""
        self._found = {}
        self._forgotten = True

    async def reload_forgotten(self) -> None:
        """Reload after `forget`, so the first reading after a registration is calibrated.
        Only a change heard from the database (so it is up) triggers it; if the reload fails
        anyway, the periodic refresh is the fallback and the batch goes on with what we have."""
        if not self._forgotten:
            return
        self._forgotten = False
        try:
            await self.refresh()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, psycopg.Error) as exc:
            log.warning("event=calibration_reload_failed error=%r (periodic refresh follows)", str(exc))

    def model_for(self, device_id: str, metric: str) -> tuple[int, Model] | None:
        found = self.by_device.get((device_id, metric))
        if found is not None:
            return found
        st = self.sensor_type.get(device_id)
        return self.by_type.get((st, metric)) if st else None

    @staticmethod
    def rh_index(rows: list[ReadingRow]) -> dict[tuple[str, float], float]:
        """The humidity of each (device, time) among `rows`, for models that need it."""
        return {(r[1], r[0]): r[4] for r in rows if r[2] == "rh" and r[4] is not None}

    def apply(self, rows: list[ReadingRow], rh_at: dict[tuple[str, float], float] | None = None) -> list[ReadingRow]:
        """Rows with `value` and `calibration_id` set where a model applies.

        Hot path (every reading of every batch): the model of each (device, metric) is
        looked up once per refresh, and each model runs once per call, on a numpy array of
        its rows.
        """
        if not self.by_device and not self.by_type:
            return rows
        found_for = self._found
        if len(found_for) > 500_000:  # bounded: ids that come and go
            found_for.clear()
        groups: dict[int, list[int]] = {}  # calibration id -> row indexes
        models: dict[int, Model] = {}
        if rh_at is None:
            rh_at = self.rh_index(rows)
        model_for = self.model_for
        for i, row in enumerate(rows):
            value = row[4]
            if value is None:
                continue
            device_id, metric = row[1], row[2]
            key = (device_id, metric)
            try:
                found = found_for[key]
            except KeyError:
                found = found_for[key] = model_for(device_id, metric)
            if found is not None:
                cal_id = found[0]
                idx = groups.get(cal_id)
                if idx is None:
                    idx = groups[cal_id] = []
                    models[cal_id] = found[1]
                idx.append(i)
        if not groups:
            return rows
        out = list(rows)
        nan, isnan = math.nan, math.isnan
        for cal_id, idx in groups.items():
            model = models[cal_id]
            x = np.array([rows[i][4] for i in idx], dtype=np.float64)
            rh = None
            if model.needs_rh:
                rh = np.array([rh_at.get((rows[i][1], rows[i][0]), nan) for i in idx], dtype=np.float64)
            for i, v in zip(idx, model.apply(x, rh).tolist(), strict=True):
                ts, device_id, metric, raw, _value, flags, _cal = rows[i]
                out[i] = (ts, device_id, metric, raw, None if isnan(v) else v, flags, cal_id)
        return out
