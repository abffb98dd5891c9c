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


DbDep = Annotated[AsyncConnection, Depends(get_db)]
