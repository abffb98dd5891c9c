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
from collections import defaultdict

import asyncpg
import numpy as np
import orjson
import psycopg

from calibration.models import CalibrationModelError, Model, parse_model
from calibration.store import ensure_default_calibration
from gateway.records import ReadingRow

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
        self._loaded_at = 0.0

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

    def model_for(self, device_id: str, metric: str) -> tuple[int, Model] | None:
        found = self.by_device.get((device_id, metric))
        if found is not None:
            return found
        st = self.sensor_type.get(device_id)
        return self.by_type.get((st, metric)) if st else None

    def apply(self, rows: list[ReadingRow]) -> list[ReadingRow]:
        """Rows with `value` and `calibration_id` set where a model applies."""
        if not self.by_device and not self.by_type:
            return rows
        groups: dict[int, list[int]] = defaultdict(list)  # calibration id -> row indexes
        models: dict[int, Model] = {}
        rh_at: dict[tuple[str, float], float] = {}
        for i, (ts, device_id, metric, _raw, value, _flags, _cal) in enumerate(rows):
            if metric == "rh" and value is not None:
                rh_at[(device_id, ts)] = value
            if value is None:
                continue
            found = self.model_for(device_id, metric)
            if found is not None:
                groups[found[0]].append(i)
                models[found[0]] = found[1]
        if not groups:
            return rows
        out = list(rows)
        for cal_id, idx in groups.items():
            model = models[cal_id]
            x = np.fromiter((rows[i][4] for i in idx), dtype=np.float64, count=len(idx))  # type: ignore[misc]
            rh = np.fromiter(
                (rh_at.get((rows[i][1], rows[i][0]), np.nan) for i in idx), dtype=np.float64, count=len(idx)
            )
            y = model.apply(x, rh)
            for j, i in enumerate(idx):
                ts, device_id, metric, raw, _value, flags, _cal = rows[i]
                v = float(y[j])
                out[i] = (ts, device_id, metric, raw, None if math.isnan(v) else v, flags, cal_id)
        return out
