"""A small time-to-live cache for whole responses that many clients poll (the city map).

A map polled by hundreds of browsers every few seconds would otherwise run the same
1,000-probe query for each of them; with a TTL of a few seconds the database runs it once
per TTL, and every answer is at most that many seconds older than the data.

Bounded on purpose: at most `max_entries` keys, least recently used out first (so a client
inventing keys cannot flush the popular ones), and one computation in flight per key (no
stampede when an entry expires) that is forgotten as soon as it finishes, so the table of
computations in flight never holds more than the keys being computed right now.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """`compute` returns the value and the monotonic time its data was read; entries live `ttl_s` from then."""

    def __init__(self, ttl_s: float, max_entries: int = 256) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self._computing: dict[Hashable, asyncio.Task[tuple[T, float]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def computing(self) -> int:
        """Computations in flight right now (one per key at most)."""
        return len(self._computing)

    async def get_or_compute(
        self, key: Hashable, compute: Callable[[], Awaitable[tuple[T, float]]]
    ) -> tuple[T, float]:
        """The cached value and its age in seconds, computing it when missing or stale.

        The computation runs in a task of its own, so a caller that goes away (a closed
        browser tab) neither cancels it for the others waiting on it nor leaves them hanging.
        """
        if self.ttl_s <= 0:
            value, _ = await compute()
            return value, 0.0
        hit = self._fresh(key)
        if hit is not None:
            return hit
        task = self._computing.get(key)
        if task is None:
            task = asyncio.create_task(self._fill(key, compute))
            self._computing[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        value, born = await asyncio.shield(task)
        return value, max(0.0, time.monotonic() - born)

    def _fresh(self, key: Hashable) -> tuple[T, float] | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        age = time.monotonic() - hit[0]
        if age >= self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[1], age

    async def _fill(self, key: Hashable, compute: Callable[[], Awaitable[tuple[T, float]]]) -> tuple[T, float]:
        value, born = await compute()
        self._entries[key] = (born, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value, born

    def _forget(self, key: Hashable, done: asyncio.Task[tuple[T, float]]) -> None:
        if self._computing.get(key) is done:
            del self._computing[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody awaited is not logged as lost
