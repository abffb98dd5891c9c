"""Which device ids exist and which are registered, kept current by PostgreSQL NOTIFY.

Open networks (the default, as LASS) register a new id on its first message as
unregistered; closed networks reject it. The cache follows the database at once:
`listen` holds its own asyncpg connection LISTENing on the channels the triggers of
migration 0003 notify at commit, and applies each device change from the payload alone
(no query between a registration's commit and the next reading). Subscribers
(`on_change`) hear the device id of every change, or None when anything may have
changed (a full reload, a sensor-type calibration). Whenever the listener (re)connects
it reloads the whole registry, so nothing committed while it was away is missed; the
periodic `refresh_if_stale` remains only as a fallback. Lookups for unknown ids in a
closed network still ask the database once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg
import orjson

log = logging.getLogger(__name__)

DEVICES_CHANNEL = "citysense_devices"
CALIBRATIONS_CHANNEL = "citysense_calibrations"
LISTENER_APPLICATION_NAME = "citysense-registry-listener"  # how operators find it in pg_stat_activity
LISTENER_PING_S = 10.0  # a half-open TCP connection sends no termination; a ping finds it

ChangeCallback = Callable[[str | None], None]
"""Called with the id of a device whose registration or calibration changed; None = any device."""


class NewDeviceBudget:
    """How many new ids an open network registers per minute (a token bucket: `per_minute` a
    minute, bursts up to that many). Without it 10,000 made-up ids in two seconds became 10,000
    permanent device rows and a 2.5 MB city map. Per gateway process: with N replicas the city
    admits N times the figure, still bounded."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self.at = time.monotonic()

    def take(self, wanted: int) -> int:
        """How many of `wanted` new ids may be registered now."""
        now = time.monotonic()
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.at) * self.per_minute / 60.0)
        self.at = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


class DeviceRegistry:
    def __init__(
        self, database_url: str, accept_unknown: bool, refresh_s: float = 60.0, new_per_minute: int = 600
    ) -> None:
        self.database_url = database_url
        self.accept_unknown = accept_unknown
        self.new_budget = NewDeviceBudget(new_per_minute)
        self.refresh_s = refresh_s
        self.known: set[str] = set()
        self.registered: set[str] = set()
        self.kinds: dict[str, str] = {}  # device id -> kind (airbox, parking, lass): its namespace
        self.by_dev_eui: dict[str, str] = {}  # LoRaWAN EUI -> device id (devices.dev_eui, migration 0012)
        self.listening = False
        self._loaded_at = 0.0
        self._subscribers: list[ChangeCallback] = []

    def on_change(self, callback: ChangeCallback) -> None:
        """Call `callback` on every change the registry hears of, in the event loop, at once."""
        self._subscribers.append(callback)

    def _changed(self, device_id: str | None) -> None:
        for callback in self._subscribers:
            try:
                callback(device_id)
            except Exception:  # one broken subscriber must not stop the others or the listener
                log.exception("event=registry_subscriber_failed device=%s", device_id)

    async def refresh(self, conn: asyncpg.Connection | None = None) -> None:
        own = conn is None
        c = conn or await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await c.fetch(
                "SELECT device_id, registered, kind, dev_eui FROM devices WHERE retired_at IS NULL"
            )
        finally:
            if own:
                await c.close()
        self.known = {r["device_id"] for r in rows}
        self.registered = {r["device_id"] for r in rows if r["registered"]}
        self.kinds = {r["device_id"]: r["kind"] for r in rows}
        self.by_dev_eui = {r["dev_eui"]: r["device_id"] for r in rows if r["dev_eui"] is not None}
        self._loaded_at = time.monotonic()
        self._changed(None)

    async def refresh_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            await self.refresh()

    async def lookup_missing(self, ids: set[str]) -> set[str]:
        """Of `ids` not in the cache, those the database knows now (closed networks only)."""
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT device_id, registered, kind FROM devices WHERE device_id = ANY($1::text[])"
                " AND retired_at IS NULL",
                list(ids),
            )
        finally:
            await conn.close()
        found = {r["device_id"] for r in rows}
        self.known |= found
        self.kinds.update({r["device_id"]: r["kind"] for r in rows})
        self.registered |= {r["device_id"] for r in rows if r["registered"]}
        return found

    async def lookup_dev_euis(self, dev_euis: set[str]) -> dict[str, str]:
        """Of `dev_euis` not in the cache, those a device holds now (EUI -> device id): a
        registration committed a moment ago may not have been notified yet."""
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT dev_eui, device_id FROM devices WHERE dev_eui = ANY($1::text[]) AND retired_at IS NULL",
                list(dev_euis),
            )
        finally:
            await conn.close()
        found = {r["dev_eui"]: r["device_id"] for r in rows}
        self.by_dev_eui.update(found)
        return found

    def _set_dev_eui(self, device_id: str, dev_eui: str | None) -> None:
        for eui in [e for e, d in self.by_dev_eui.items() if d == device_id and e != dev_eui]:
            del self.by_dev_eui[eui]  # the device's former EUI (at most one)
        if dev_eui is not None:
            self.by_dev_eui[dev_eui] = device_id

    def note_new(self, devices: list[tuple[str, str]]) -> None:
        """Ids this gateway has just stored itself (open network, unregistered), with their kind."""
        for device_id, kind in devices:
            self.known.add(device_id)
            self.kinds.setdefault(device_id, kind)

    # -- NOTIFY --------------------------------------------------------------------------
    def apply_device_notification(self, payload: str) -> None:
        """One committed change of a `devices` row (JSON from the 0003 trigger)."""
        try:
            doc = orjson.loads(payload)
            device_id = str(doc["device_id"])
            registered, active = bool(doc["registered"]), bool(doc["active"])
            kind = doc.get("kind")
            dev_eui = doc.get("dev_eui")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("event=registry_bad_notification payload=%r error=%r", payload[:200], str(exc))
            return
        if active:
            self.known.add(device_id)
            if isinstance(kind, str):
                self.kinds[device_id] = kind
            if registered:
                self.registered.add(device_id)
            else:
                self.registered.discard(device_id)
            self._set_dev_eui(device_id, dev_eui if isinstance(dev_eui, str) else None)
        else:
            self.known.discard(device_id)
            self.registered.discard(device_id)
            self.kinds.pop(device_id, None)
            self._set_dev_eui(device_id, None)
        self._changed(device_id)

    def _on_notification(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        text = str(payload)
        if channel == DEVICES_CHANNEL:
            self.apply_device_notification(text)
        elif channel == CALIBRATIONS_CHANNEL:
            self._changed(text or None)

    async def listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection until `stop`; reload everything on each (re)connect."""
        delay = 0.5
        while not stop.is_set():
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.database_url, timeout=10, server_settings={"application_name": LISTENER_APPLICATION_NAME}
                )
                conn.add_termination_listener(lambda _c, ended=lost: ended.set())
                await conn.add_listener(DEVICES_CHANNEL, self._on_notification)
                await conn.add_listener(CALIBRATIONS_CHANNEL, self._on_notification)
                await self.refresh(conn)  # after LISTEN: a change committed meanwhile is either loaded or notified
                self.listening = True
                log.info("event=registry_listening devices=%d registered=%d", len(self.known), len(self.registered))
                delay = 0.5
                while not stop.is_set() and not lost.is_set():
                    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                    _done, pending = await asyncio.wait(waiters, timeout=LISTENER_PING_S)
                    for w in pending:
                        w.cancel()
                    if not stop.is_set() and not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=5)
                reason = "connection closed"
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                reason = str(exc)
            except Exception as exc:  # the listener must outlive anything; the TTL refresh covers the gap
                log.exception("event=registry_listener_crashed")
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            if stop.is_set():
                return
            log.warning("event=registry_listener_lost error=%r retry_in_s=%.1f", reason, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
