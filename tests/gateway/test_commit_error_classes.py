"""Which write errors the committer waits out (outages) and which it isolates (refusals)."""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions._base import DataError as ClientDataError

from gateway.pipeline import is_outage


def test_connection_losses_and_server_shutdowns_are_outages_worth_retrying() -> None:
    for exc in (
        ConnectionRefusedError(111, "refused"), TimeoutError(), asyncpg.ConnectionDoesNotExistError("closed"),
        asyncpg.exceptions.AdminShutdownError("fast shutdown"), asyncpg.exceptions.CrashShutdownError("crash"),
        asyncpg.CannotConnectNowError("starting up"),
    ):
        assert is_outage(exc), exc


def test_a_value_asyncpg_cannot_encode_is_a_refusal_not_an_outage() -> None:
    """asyncpg's client-side DataError is an InterfaceError: taken for an outage, one status
    with a 64-bit heap would be retried forever and stall the whole stream."""
    exc = ClientDataError("invalid input for query argument $6: [1099511627776] (value out of int32 range)")
    assert isinstance(exc, asyncpg.InterfaceError)
    assert not is_outage(exc)


def test_constraint_violations_are_refusals() -> None:
    assert not is_outage(asyncpg.CheckViolationError("violates check constraint"))
    assert not is_outage(asyncpg.exceptions.NumericValueOutOfRangeError("smallint out of range"))
