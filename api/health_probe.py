"""The health check's own database connection: an answer within a second whatever the pool does.

Health used to borrow a pooled connection: with the pool held by slow exports it waited for
one, and behind a table lock it hung 17 s and then said ok. Here it keeps one connection of
its own (autocommit, server-side statement and lock timeouts shorter than the budget), and
the whole check, reconnecting included, runs under an asyncio deadline. A connection that
failed or timed out is dropped and made again by the next check.

It talks to where the API reads (CITYSENSE_DATABASE_READ_URL when set), so it also says
whether that server is a standby and how far its replay is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
from psycopg import AsyncConnection

from ingest.backend import SchemaMissing

BUDGET_S = 0.9
"""The whole check, connecting included, answers within this (under the 1 s a monitor expects)."""

STATEMENT_TIMEOUT_MS = 500
"""The server cancels a health query after this: a lock on readings makes health say so, fast."""

_NEWEST = "SELECT extract(epoch FROM now() - max(time)) FROM readings WHERE time > now() - interval '1 day'"
_DEVICES = "SELECT count(*) FROM devices WHERE retired_at IS NULL"
# On a standby, lag is 0 while everything received has been replayed (an idle primary sends
# nothing, so the age of the last replayed commit alone would grow without any lag), else the
# age of the last replayed commit; both are NULL on a primary.
_REPLICA = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())
"""


def _seconds(value: object) -> float | None:
    return None if value is None else round(float(value), 3)  # type: ignore[arg-type]


class HealthProbeError(RuntimeError):
    """Why the database does not look usable, in words for the health body."""


class HealthProbe:
    def __init__(self, database_url: str, budget_s: float = BUDGET_S) -> None:
        self.database_url = database_url
        self.budget_s = budget_s
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> dict[str, Any]:
        """Newest reading age, device count and standby state, or HealthProbeError within the budget.

        A kept connection that broke (the database restarted since) is replaced once, in
        the same check, so a restart shows as one slower answer rather than one failure.
        """
        try:
            async with asyncio.timeout(self.budget_s), self._lock:
                reused = self._conn is not None and not self._conn.closed
                try:
                    return await self._query(await self._connection())
                except psycopg.errors.QueryCanceled:
                    raise
                except psycopg.OperationalError:
                    if not reused:
                        raise
                    await self._drop()
                    return await self._query(await self._connection())
        except TimeoutError:
            await self._drop()
            raise HealthProbeError(f"no answer within {self.budget_s:g} s") from None
        except psycopg.errors.QueryCanceled:
            await self._drop()
            raise HealthProbeError(
                f"a health query ran past {STATEMENT_TIMEOUT_MS} ms (a lock or an overload)"
            ) from None
        except psycopg.errors.UndefinedTable:  # reachable, but never migrated: not "unreachable"
            raise HealthProbeError(f"schema missing: {SchemaMissing()}") from None
        except psycopg.Error as exc:
            await self._drop()
            raise HealthProbeError(f"unreachable: {type(exc).__name__}") from None

    @staticmethod
    async def _query(conn: AsyncConnection[Any]) -> dict[str, Any]:
        cur = await conn.execute(_NEWEST)
        row = await cur.fetchone()
        age = row[0] if row else None
        cur = await conn.execute(_DEVICES)
        n = await cur.fetchone()
        cur = await conn.execute(_REPLICA)
        standby = await cur.fetchone()
        in_recovery, lag, replay_age = standby if standby else (False, None, None)
        return {"newest_reading_age_s": None if age is None else round(float(age), 1),
                "devices": int(n[0]) if n else 0,
                "standby": {"in_recovery": bool(in_recovery), "lag_s": _seconds(lag),
                            "last_replay_age_s": _seconds(replay_age)}}

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await AsyncConnection.connect(
                self.database_url, autocommit=True, connect_timeout=2,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
                application_name="citysense-api-health",
            )
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        await self._drop()
