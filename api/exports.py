"""Exports (CSV, large pages of readings): a bounded number at once, and no connection held while sending.

A slow client reading a year of CSV at 20 kB/s used to keep a pooled connection for hours;
12 of them held the whole pool and every other request failed. Here an export
- takes one of `CITYSENSE_API_MAX_CONCURRENT_EXPORTS` slots or gets a 429 with Retry-After,
- reads the database window by window (six hours at a time), each with a pooled connection
  held only for that one query, so a slow reader holds a slot but never a connection,
- frees its slot when the last byte is sent or the client goes away.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

EXPORT_ROWS = 10_000
"""A page of readings with more rows than this is an export (it holds its slot while it is sent)."""

WINDOW = timedelta(hours=6)
"""Each database read of an export covers this much time: bounded memory, a short query."""

EXPORT_RETRY_AFTER_S = 30


class ExportSlots:
    """A counter of exports in progress (the API is one asyncio loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def claim(self) -> ExportSlot:
        """A slot, or a 429 that says how many exports run and when to retry."""
        if self.in_use >= self.limit:
            raise HTTPException(
                status_code=429,
                detail=f"{self.limit} exports are running, the most served at once "
                "(CITYSENSE_API_MAX_CONCURRENT_EXPORTS): retry later",
                headers={"Retry-After": str(EXPORT_RETRY_AFTER_S)},
            )
        self.in_use += 1
        return ExportSlot(self)


class ExportSlot:
    def __init__(self, slots: ExportSlots) -> None:
        self._slots: ExportSlots | None = slots

    def release(self) -> None:
        """Give the slot back; a second call does nothing."""
        if self._slots is not None:
            self._slots.in_use -= 1
            self._slots = None


def claim_export_slot(request: Request) -> ExportSlot:
    slots: ExportSlots = request.app.state.export_slots
    return slots.claim()


class SlotStreamingResponse(StreamingResponse):
    """A streamed export that frees its slot and closes its generator however the send ends."""

    def __init__(self, content: AsyncGenerator[str, None], slot: ExportSlot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._generator = content
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()
            await self._generator.aclose()


class SlotJSONResponse(JSONResponse):
    """A large JSON page that holds its slot until it has been sent."""

    def __init__(self, content: Any, slot: ExportSlot) -> None:
        super().__init__(content)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()


def windows(start: datetime, end: datetime, width: timedelta = WINDOW) -> Iterable[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of `width` (the last one shorter)."""
    a = start
    while a < end:
        b = min(end, a + width)
        yield a, b
        a = b


FetchWindow = Callable[[datetime, datetime], Awaitable[Sequence[Sequence[Any]]]]


async def csv_lines(
    header: Sequence[str], start: datetime, end: datetime, fetch: FetchWindow,
    to_row: Callable[[Sequence[Any]], Sequence[Any]],
) -> AsyncGenerator[str, None]:
    """The header with the first window's rows, then the rows of each window as one CSV chunk."""
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(header)
    for a, b in windows(start, end):
        for row in await fetch(a, b):
            out.writerow(to_row(row))
        if buf.tell():
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    if buf.tell():  # no window at all: the header alone
        yield buf.getvalue()


async def csv_export(
    slot: ExportSlot, lines: AsyncGenerator[str, None], filename: str
) -> SlotStreamingResponse:
    """Start the export: the first chunk is read before the status line, so a database failure is a 503."""
    try:
        first = await anext(lines)
    except BaseException:
        slot.release()
        await lines.aclose()
        raise

    async def body() -> AsyncGenerator[str, None]:
        yield first
        try:
            async for chunk in lines:
                yield chunk
        finally:
            await lines.aclose()

    return SlotStreamingResponse(
        body(), slot, media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

