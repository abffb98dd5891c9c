"""A tiny time-to-live cache for whole responses that many clients poll (the city map).

A map polled by hundreds of browsers every few seconds would otherwise run the same
1,000-probe query for each of them; with a TTL of a few seconds the database runs it once
per TTL, and every answer is at most that many seconds older than the data. One lock per
key stops a stampede when an entry expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable


class TtlCache:
    def __init__(self, ttl_s: float, max_entries: int = 256) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, bytes]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get_or_compute(self, key: Hashable, compute: Callable[[], Awaitable[bytes]]) -> tuple[bytes, float]:
        """The cached body and its age in seconds, computing it when missing or stale."""
        if self.ttl_s <= 0:
            return await compute(), 0.0
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1], now - hit[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._entries.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[0] < self.ttl_s:
                return hit[1], now - hit[0]
            body = await compute()
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), body)
            return body, 0.0
