"""`citysense import`: history files into the database through the live data's rules (gateway/history_import.py).

Heavy modules (asyncpg, the gateway) are imported when the command runs, not when the CLI starts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from citysense.terminal import make_console

if TYPE_CHECKING:
    from gateway.history_formats import HistoryChunk, HistoryFormat

console = make_console()
err_console = make_console(stderr=True)

FORMAT_KINDS = {"csv": "airbox", "lass-json": "lass", "moenv": "airbox"}


def _fail(message: str) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


def import_command(
    file: Annotated[Path, typer.Argument(help="The history file", exists=True, dir_okay=False, readable=True)],
    fmt: Annotated[str, typer.Option("--format", help="csv (device,time,metric,value), lass-json or moenv")] = "csv",
    device: Annotated[str | None, typer.Option("--device", help="moenv: the device id of the station")] = None,
    station: Annotated[str | None, typer.Option("--station", help="moenv: station, if several")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of times without an offset, e.g. Asia/Taipei")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (progress on stderr)")] = False,
) -> None:
    """Import history (any age, flagged IMPORTED) with the live data's validation, flags and calibration; idempotent."""
    import psycopg  # noqa: PLC0415
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from contracts.settings import get_settings  # noqa: PLC0415
    from gateway.history_formats import (  # noqa: PLC0415
        HistoryFormatError,
        count_units,
        read_csv,
        read_lass_json,
        read_moenv_station,
    )
    from gateway.history_import import HistoryImporter, ImportReport  # noqa: PLC0415
    from ingest.calibration_store import refresh_aggregates  # noqa: PLC0415

    if fmt not in FORMAT_KINDS:
        raise _fail(f"--format must be csv, lass-json or moenv, got {fmt!r}")
    if fmt == "moenv" and not device:
        raise _fail("--format moenv needs --device (the id the station's readings are stored under)")
    settings = get_settings()
    chunks: Iterator[HistoryChunk]
    history_format: HistoryFormat = "csv" if fmt == "csv" else "lass-json" if fmt == "lass-json" else "moenv"
    if fmt == "csv":
        chunks = read_csv(file, tz=tz)
    elif fmt == "lass-json":
        chunks = read_lass_json(file, tz=tz)
    else:
        assert device is not None
        chunks = read_moenv_station(file, device=device, station=station)

    async def run(progress: Progress) -> ImportReport:
        task = progress.add_task(f"importing {file.name}", total=count_units(file, history_format))
        done = 0

        def advance(now: int) -> None:
            nonlocal done
            progress.advance(task, now - done)
            done = now

        importer = HistoryImporter(
            settings.database_url, kind=FORMAT_KINDS[fmt], accept_unknown=settings.accept_unknown_devices
        )
        async with importer:
            return await importer.import_chunks(chunks, advance)

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err_console, transient=as_json) as progress:
            report = asyncio.run(run(progress))
    except HistoryFormatError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot reach the database (CITYSENSE_DATABASE_URL): {exc}") from None
    refreshed = None
    if report.days:
        with psycopg.connect(settings.database_url) as conn:
            for first_day, last_day in report.day_ranges():
                refreshed = refresh_aggregates(conn, first_day, last_day)
    answer = {"file": str(file), "format": fmt, **report.as_json(), "aggregates_refreshed": refreshed}
    if as_json:
        print(json.dumps(answer, ensure_ascii=False))
        return
    console.print(
        f"{report.rows_read} readings read, {report.rows_stored} stored, "
        f"{answer['rows_duplicate']} already there, {report.rows_refused} refused; "
        f"{len(report.devices)} devices ({len(report.registered_new)} new, unregistered); "
        f"{answer['readings_per_second']} readings/s",
        markup=False,
        highlight=False,
    )
    for reason in report.refusals:
        console.print(f"refused: {reason}", markup=False, highlight=False)
    if refreshed:
        days = ", ".join(f"{a.date()}..{b.date()}" for a, b in report.day_ranges())
        console.print(f"aggregates refreshed ({refreshed}) over {days}", markup=False)
