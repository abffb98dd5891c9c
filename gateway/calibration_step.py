"""Calibrate each live batch with the one calibration engine (`calibration.engine`).

The rules (which model, which flags give no value, clipping, humidity) are the engine's;
this module only keeps the stored versions in memory. Each device's `ModelHistory` (its
versions and its sensor type's defaults, per metric a time line) is built once and
memoised, so the hot path is a dict lookup and a bisect per reading, and one vectorised
model call per (calibration, metric) per chunk.

Freshness: `forget(device_id)` (called when the database announces a new registration or
calibration) drops what is cached for one device, or for all with None; the pipeline
calls `reload_forgotten()` before calibrating a batch, so no batch prepared after
`forget` returns is calibrated with what the database no longer holds. A full reload
every `refresh_s` is the fallback for a missed announcement.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import psycopg

from calibration.engine import ModelHistory, ModelVersion, calibrate, humidity_input
from calibration.models import CalibrationModelError
from contracts.records import ReadingRow
from ingest.calibration_store import CalibrationRecord, CalibrationState, load_calibration_state

log = logging.getLogger(__name__)

HISTORY_CACHE_MAX = 500_000  # device histories kept; ids that come and go must not grow it forever
RELOAD_RETRY_S = 5.0  # after a failed reload of forgotten devices, calibrate with what we have this long


class DeviceHistories(dict[str, ModelHistory]):
    """Memoised `ModelHistory` per device id; a missing one is built on first use (so the hot
    path is one dict lookup), and the whole memo is dropped when it reaches HISTORY_CACHE_MAX."""

    def __init__(self, build: Callable[[str], ModelHistory]) -> None:
        super().__init__()
        self.build = build

    def __missing__(self, device_id: str) -> ModelHistory:
        if len(self) >= HISTORY_CACHE_MAX:
            self.clear()
        history = self[device_id] = self.build(device_id)
        return history


class Calibrator:
    """The gateway's calibration step: stored versions cached in memory, the engine applied per chunk."""

    def __init__(self, database_url: str, refresh_s: float = 60.0) -> None:
        self.database_url = database_url
        self.refresh_s = refresh_s
        self._device_versions: dict[str, list[ModelVersion]] = {}
        self._type_versions: dict[str, list[ModelVersion]] = {}
        self._sensor_type: dict[str, str] = {}
        self._cache = DeviceHistories(self._build_history)
        self._forgotten: set[str] = set()
        self._forgot_all = False
        self._generation = 0  # counts forget() calls, so a reload knows whether one came meanwhile
        self._retry_at = 0.0
        self._loaded_at = -math.inf

    # -- loading ---------------------------------------------------------------------------
    def _load(self, device_ids: list[str] | None) -> CalibrationState:
        """Stored versions (psycopg, in a thread); an unreachable database is a ConnectionError,
        which the gateway's start-up and refresh loops treat as an outage and retry."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=10) as conn:
                return load_calibration_state(conn, device_ids)
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"cannot load calibrations: {exc}") from exc

    @staticmethod
    def _versions(records: list[CalibrationRecord]) -> list[ModelVersion]:
        versions = []
        for record in records:
            try:
                versions.append(record.version())
            except CalibrationModelError as exc:
                log.error("event=calibration_invalid id=%s error=%r (ignored)", record.id, str(exc))
        return versions

    async def refresh(self) -> None:
        """Reload every stored version and device type (the TTL fallback, and at start-up)."""
        generation = self._generation
        state = await asyncio.to_thread(self._load, None)
        self.install(state)
        if self._generation == generation:  # nothing forgotten while we read: all is current
            self._forgot_all = False
            self._forgotten.clear()

    def install(self, state: CalibrationState) -> None:
        """Use `state` (every stored version) from now on, replacing all that is cached."""
        self._device_versions = {d: self._versions(r) for d, r in state.device_records.items()}
        self._type_versions = {t: self._versions(r) for t, r in state.type_records.items()}
        self._sensor_type = dict(state.sensor_types)
        self._cache.clear()
        self._loaded_at = time.monotonic()

    async def refresh_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            await self.refresh()

    def forget(self, device_id: str | None) -> None:
        """Drop the cached models of one device (None: of all); `reload_forgotten` fetches them anew."""
        self._generation += 1
        self._retry_at = 0.0
        if device_id is None:
            self._forgot_all = True
            self._cache.clear()
        else:
            self._forgotten.add(device_id)
            self._cache.pop(device_id, None)

    async def reload_forgotten(self) -> None:
        """Fetch what `forget` dropped; a no-op when nothing was. An unreachable database keeps
        the previous versions (retried after RELOAD_RETRY_S) rather than stalling the batch.
        Whatever is forgotten while a reload reads stays pending for the next call."""
        if not (self._forgot_all or self._forgotten) or time.monotonic() < self._retry_at:
            return
        generation = self._generation
        devices = sorted(self._forgotten)
        try:
            if self._forgot_all:
                await self.refresh()
                return
            state = await asyncio.to_thread(self._load, devices)
        except OSError as exc:  # ConnectionError and TimeoutError included
            self._retry_at = time.monotonic() + RELOAD_RETRY_S
            log.warning("event=calibration_reload_failed error=%r retry_in_s=%.0f", str(exc), RELOAD_RETRY_S)
            return
        types_read = set(state.sensor_types.values())
        for sensor_type in types_read:
            self._type_versions[sensor_type] = self._versions(state.type_records.get(sensor_type, []))
        for device_id in devices:
            self._device_versions[device_id] = self._versions(state.device_records.get(device_id, []))
            device_type = state.sensor_types.get(device_id)
            if device_type is None:
                self._sensor_type.pop(device_id, None)
            else:
                self._sensor_type[device_id] = device_type
        # the defaults of the types just read may have changed for every device of those types
        loaded = set(devices)
        for device_id in [d for d in self._cache if d in loaded or self._sensor_type.get(d) in types_read]:
            del self._cache[device_id]
        if self._generation == generation:
            self._forgotten.clear()

    # -- hot path --------------------------------------------------------------------------
    def _build_history(self, device_id: str) -> ModelHistory:
        sensor_type = self._sensor_type.get(device_id)
        defaults = self._type_versions.get(sensor_type, []) if sensor_type is not None else []
        return ModelHistory(self._device_versions.get(device_id, []), defaults)

    def history(self, device_id: str) -> ModelHistory:
        """One device's versions as the engine takes them (memoised), for `calibrate_series` (the importer)."""
        return self._cache[device_id]

    @staticmethod
    def rh_index(rows: list[ReadingRow]) -> dict[tuple[str, float], float]:
        """The humidity of each (device, time) among `rows` (`humidity_input`). Where a batch holds
        two rh readings of one device and time, the first wins, as the database keeps the first."""
        return {
            (r[1], r[0]): humidity_input(r[3], r[5]) for r in reversed(rows) if r[2] == "rh"
        }

    def apply(self, rows: list[ReadingRow], rh_at: dict[tuple[str, float], float] | None = None) -> list[ReadingRow]:
        """`rows` with `value` and `calibration_id` set by the engine (from raw and flags); `rh_at`
        is `rh_index` of the whole batch (computed from `rows` when not given)."""
        if not rows:
            return rows
        return calibrate(rows, self._cache, self.rh_index(rows) if rh_at is None else rh_at)
