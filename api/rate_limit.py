"""A per-client rate limit on the read endpoints: a token bucket per client address.

A client may make `burst` requests at once and then `rate_per_s` a second; beyond that it
gets a 429 with Retry-After. The address is the one uvicorn puts in the ASGI scope, which
behind a trusted reverse proxy is the client's own (uvicorn's --forwarded-allow-ips).
The table of buckets is bounded: past `max_clients` addresses the least recently seen goes
(a bucket left alone that long is full again anyway), so a flood of addresses costs no memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Annotated

from fastapi import Depends, HTTPException, Request


class ClientRateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0 (no limiter at all means no limit)")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one request of `client`: 0.0 if allowed, else the seconds until it may ask again."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def rate_limit(request: Request) -> None:
    """Refuse a read request beyond its client's rate with a 429 and Retry-After."""
    limiter: ClientRateLimiter | None = getattr(request.app.state, "rate_limiter", None)  # an app without one
    if limiter is None:
        return
    client = request.client.host if request.client else "unknown"
    wait = limiter.take(client)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise HTTPException(
            status_code=429,
            detail=f"more than {limiter.rate_per_s:g} requests per second (burst {limiter.burst}) from {client}: "
            f"retry after {retry_after} s (CITYSENSE_API_RATE_LIMIT_PER_S)",
            headers={"Retry-After": str(retry_after)},
        )


RateLimited = Depends(rate_limit)
"""For a router's `dependencies=[RateLimited]`."""

RateLimitDep = Annotated[None, RateLimited]
