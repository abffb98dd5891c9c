"""Dependencies shared by the routers, as type aliases (DbDep)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool


def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def get_db(request: Request) -> AsyncIterator[AsyncConnection]:
    async with get_pool(request).connection() as conn:
        yield conn


DbDep = Annotated[AsyncConnection, Depends(get_db, scope="function")]
"""A pooled connection for the route's own code: back in the pool when the route returns, not when
the response has been sent, so a client that reads slowly never holds a connection (scope="function")."""


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
