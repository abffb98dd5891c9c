"""Which device ids exist, cached in memory and refreshed from `devices`.

Open networks (the default, as LASS) register a new id on its first message as
unregistered; closed networks reject it. Lookups for unknown ids in a closed network
ask the database once per batch, so a device registered a second ago is accepted.
"""

from __future__ import annotations

import time

import asyncpg


class DeviceRegistry:
    def __init__(self, database_url: str, accept_unknown: bool, refresh_s: float = 60.0) -> None:
        self.database_url = database_url
        self.accept_unknown = accept_unknown
        self.refresh_s = refresh_s
        self.known: set[str] = set()
        self.registered: set[str] = set()
        self._loaded_at = 0.0

    async def refresh(self, conn: asyncpg.Connection | None = None) -> None:
        own = conn is None
        c = conn or await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await c.fetch("SELECT device_id, registered FROM devices WHERE retired_at IS NULL")
        finally:
            if own:
                await c.close()
        self.known = {r["device_id"] for r in rows}
        self.registered = {r["device_id"] for r in rows if r["registered"]}
        self._loaded_at = time.monotonic()

    async def refresh_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            await self.refresh()

    async def lookup_missing(self, ids: set[str]) -> set[str]:
        """Of `ids` not in the cache, those the database knows now (closed networks only)."""
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT device_id, registered FROM devices WHERE device_id = ANY($1::text[]) AND retired_at IS NULL",
                list(ids),
            )
        finally:
            await conn.close()
        found = {r["device_id"] for r in rows}
        self.known |= found
        self.registered |= {r["device_id"] for r in rows if r["registered"]}
        return found
