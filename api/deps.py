"""Dependencies shared by the routers, as type aliases: DbDep reads, PrimaryDbDep writes.

Reads and writes have their own pools (api/app.py): with CITYSENSE_DATABASE_READ_URL set the
read pool is on a streaming replica, which refuses writes, so a route that writes must take
PrimaryDbDep; without it both pools are one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool


def read_pool(request: Request) -> AsyncConnectionPool:
    """The pool every read uses (a replica's when one is configured); for routes that stream."""
    pool: AsyncConnectionPool = request.app.state.read_pool
    return pool


def primary_pool(request: Request) -> AsyncConnectionPool:
    """The pool on the primary, for writes."""
    pool: AsyncConnectionPool = request.app.state.primary_pool
    return pool


async def get_db(request: Request) -> AsyncIterator[AsyncConnection]:
    async with read_pool(request).connection() as conn:
        yield conn


async def get_primary_db(request: Request) -> AsyncIterator[AsyncConnection]:
    async with primary_pool(request).connection() as conn:
        yield conn


DbDep = Annotated[AsyncConnection, Depends(get_db, scope="function")]
"""A pooled read connection for the route's own code (the replica's when one is set): back in the
pool when the route returns, not when the response has been sent, so a client that reads slowly
never holds a connection (scope="function")."""

PrimaryDbDep = Annotated[AsyncConnection, Depends(get_primary_db, scope="function")]
"""A pooled connection on the primary, for a route that writes (registration, update, retirement)."""


def require_admin(request: Request) -> None:
    """Admin endpoints need `Authorization: Bearer <CITYSENSE_ADMIN_TOKEN>`; with no token set they are off."""
    import hmac  # noqa: PLC0415

    from fastapi import HTTPException  # noqa: PLC0415

    token = request.app.state.settings.admin_token
    if not token:
        raise HTTPException(status_code=403, detail="admin endpoints are off: set CITYSENSE_ADMIN_TOKEN")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(status_code=401, detail="missing or wrong admin bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


AdminDep = Annotated[None, Depends(require_admin)]
