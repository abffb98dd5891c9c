"""`citysense calibrate`: fit models against reference stations, re-apply them, check drift.

Every failure prints one line starting with ``error:`` and exits with status 1, so the
commands can be scripted by a bureau's cron jobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from calibration.drift import DriftConfig, Site, detect_drift
from calibration.evaluation import Agreement
from calibration.fitting import MIN_POINTS_DEFAULT, FitError, FitKind, align, fit
from calibration.models import CalibrationModelError
from calibration.reference_import import ReferenceFormatError, read_reference
from calibration.series import to_datetime
from citysense.terminal import make_console
from contracts.settings import get_settings
from ingest.calibration_store import (
    StoreError,
    count_rows,
    get_device,
    hourly_series,
    insert_calibration,
    list_calibrations,
    list_devices,
)
from ingest.calibration_store import recalibrate as run_recalibration

app = typer.Typer(
    help="Calibrate sensors: fit against a reference station, re-apply to history, find drifting devices.",
    no_args_is_help=True,
)
console = make_console()
err_console = make_console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 1."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def parse_when(text: str, option: str) -> datetime:
    """ISO date or date-time; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not an ISO date or date-time (e.g. 2025-03-01 or 2025-03-01T08:00+08:00)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def connect() -> Iterator[psycopg.Connection[Any]]:
    """A connection to the configured database, with a readable error if it is not there."""
    url = get_settings().database_url
    try:
        conn = psycopg.connect(url)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"cannot connect to the database (CITYSENSE_DATABASE_URL): {first}")
    try:
        yield conn
    finally:
        conn.close()


def _agreement_row(label: str, stats: Agreement) -> list[str]:
    return [label, str(stats.n), f"{stats.r2:.3f}", f"{stats.rmse:.2f}", f"{stats.mae:.2f}", f"{stats.bias:+.2f}"]


@app.command("fit")
def fit_command(
    *,
    device: Annotated[str, typer.Option("--device", help="Device id to calibrate")],
    reference: Annotated[Path, typer.Option("--reference", help="Reference file: MOENV CSV or time,pm25[,rh]")],
    start: Annotated[str, typer.Option("--from", help="Start of the co-location period (ISO; UTC if no offset)")],
    end: Annotated[str, typer.Option("--to", help="End of the co-location period, exclusive")],
    kind: Annotated[str, typer.Option("--model", help="linear or multilinear_rh")] = "linear",
    robust: Annotated[bool, typer.Option("--robust", help="Huber IRLS instead of least squares")] = False,
    fmt: Annotated[str, typer.Option("--format", help="auto, moenv or generic")] = "auto",
    station: Annotated[str | None, typer.Option("--station", help="MOENV station name if the file has several")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of naive times in a generic file")] = None,
    unit: Annotated[str, typer.Option("--unit", help="Unit of the reference PM2.5: ug/m3 or mg/m3")] = "ug/m3",
    min_points: Annotated[int, typer.Option("--min-points", help="Refuse fewer paired hours")] = MIN_POINTS_DEFAULT,
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG path (default fit-<device>.png)")] = None,
    save: Annotated[bool, typer.Option("--save/--dry-run", help="Store the model, or only report")] = True,
    valid_from: Annotated[str | None, typer.Option("--valid-from", help="Model start (default --from)")] = None,
) -> None:
    """Fit a model for one device against a co-located reference station's hourly averages."""
    if kind not in ("linear", "multilinear_rh"):
        fail(f"--model must be linear or multilinear_rh, got {kind!r}")
    if fmt not in ("auto", "moenv", "generic"):
        fail(f"--format must be auto, moenv or generic, got {fmt!r}")
    begin, finish = parse_when(start, "--from"), parse_when(end, "--to")
    if finish <= begin:
        fail("--to must be after --from")
    fit_kind: FitKind = "linear" if kind == "linear" else "multilinear_rh"
    try:
        ref = read_reference(reference, fmt=fmt, station=station, tz=tz, unit=unit)  # type: ignore[arg-type]
    except ReferenceFormatError as exc:
        fail(f"{reference}: {exc}")
    for note in ref.notes:
        console.print(f"reference: {note}", markup=False)
    with connect() as conn:
        try:
            info = get_device(conn, device)
        except StoreError as exc:
            fail(str(exc))
        series = hourly_series(conn, device, begin, finish, column="raw")
        if len(series) == 0:
            fail(f"device {device} has no pm25 readings between {begin.isoformat()} and {finish.isoformat()}")
        try:
            result = fit(align(series, ref), fit_kind, robust=robust, min_points=min_points)
        except FitError as exc:
            fail(f"fit refused: {exc}")
        table = Table(title=f"{device}: {result.method}  {json.dumps(result.model.to_spec())}")
        for column in ("", "n", "R²", "RMSE", "MAE", "bias"):
            table.add_column(column, justify="right")
        table.add_row(*_agreement_row("raw", result.before))
        table.add_row(*_agreement_row("calibrated", result.after))
        console.print(table)
        picture = plot or Path(f"fit-{device}.png")
        try:
            from calibration.plots import plot_fit  # noqa: PLC0415  (matplotlib is the `plots` extra)
        except ImportError as exc:
            fail(f"the plot needs matplotlib: pip install 'citysense[plots]' ({exc})")
        plot_fit(result, picture, title=f"{device} vs {reference.name}")
        console.print(f"plot: {picture}", markup=False)
        if not save:
            console.print("dry run: model not stored")
            return
        start_at = parse_when(valid_from, "--valid-from") if valid_from else begin
        try:
            new_id = insert_calibration(
                conn,
                metric="pm25",
                model=result.model.to_spec(),
                device_id=device,
                sensor_type=info.sensor_type,
                valid_from=start_at,
                fit_stats={**result.fit_stats(), "reference": reference.name, "robust": robust},
            )
        except (CalibrationModelError, StoreError) as exc:
            fail(str(exc))
    console.print(
        f"stored calibration {new_id}; re-apply to history with: "
        f"citysense calibrate apply --device {device} --since {start_at.date().isoformat()}",
        markup=False,
    )


@app.command("apply")
def apply_command(
    *,
    device: Annotated[str, typer.Option("--device", help="Device id")],
    since: Annotated[str, typer.Option("--since", help="Recompute rows from this time (ISO; UTC if no offset)")],
    until: Annotated[str | None, typer.Option("--until", help="Stop before this time (default: now)")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Metric to recompute")] = "pm25",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per committed batch")] = 5000,
) -> None:
    """Recompute calibrated `value` from `raw` for stored rows; safe to run again."""
    begin = parse_when(since, "--since")
    finish = parse_when(until, "--until") if until else None
    with connect() as conn:
        try:
            get_device(conn, device)
        except StoreError as exc:
            fail(str(exc))
        total = count_rows(conn, device, metric, begin, finish)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"recalibrating {device}/{metric}", total=total)
            try:
                report = run_recalibration(
                    conn,
                    device,
                    begin,
                    finish,
                    metric=metric,
                    batch_size=batch_size,
                    progress=lambda done: progress.advance(task, done),
                )
            except StoreError as exc:
                fail(str(exc))
    backend = report.aggregates_backend
    refreshed = f"aggregates refreshed ({backend})" if backend else "aggregates unchanged"
    console.print(
        f"{report.rows_seen} rows checked, {report.rows_changed} changed, "
        f"calibrations used {list(report.calibration_ids) or 'none (value = raw)'}; {refreshed}",
        markup=False,
    )


@app.command("drift")
def drift_command(
    *,
    days: Annotated[int, typer.Option("--days", min=1, help="Look back this many days")] = 7,
    window_hours: Annotated[int, typer.Option("--window-hours", min=1)] = DriftConfig.window_hours,
    radius_km: Annotated[float, typer.Option("--radius-km", help="Neighbour radius")] = DriftConfig.neighbour_radius_km,
    ratio_threshold: Annotated[float, typer.Option("--ratio-threshold")] = DriftConfig.ratio_threshold,
    abs_threshold: Annotated[float, typer.Option("--abs-threshold", help="µg/m³")] = DriftConfig.abs_threshold,
    reference: Annotated[Path | None, typer.Option("--reference", help="Reference station file")] = None,
    reference_lat: Annotated[float | None, typer.Option("--reference-lat")] = None,
    reference_lon: Annotated[float | None, typer.Option("--reference-lon")] = None,
    station: Annotated[str | None, typer.Option("--station")] = None,
    tz: Annotated[str | None, typer.Option("--tz")] = None,
) -> None:
    """Compare each device with its neighbours (or a co-located reference) and list drifting ones."""
    finish = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    begin = finish - timedelta(days=days)
    sites: list[Site] = []
    if reference is not None:
        if reference_lat is None or reference_lon is None:
            fail("--reference needs --reference-lat and --reference-lon")
        try:
            ref = read_reference(reference, station=station, tz=tz)
        except ReferenceFormatError as exc:
            fail(f"{reference}: {exc}")
        sites.append(Site(f"reference:{reference.stem}", reference_lat, reference_lon, ref, is_reference=True))
    with connect() as conn:
        for info in list_devices(conn):
            if info.lat is None or info.lon is None:
                continue
            series = hourly_series(conn, info.device_id, begin, finish, column="value")
            if len(series):
                sites.append(Site(info.device_id, info.lat, info.lon, series))
    config = DriftConfig(
        window_hours=window_hours,
        neighbour_radius_km=radius_km,
        ratio_threshold=ratio_threshold,
        abs_threshold=abs_threshold,
    )
    findings = detect_drift(sites, config)
    table = Table(title=f"drift over {days} days ({len(findings)} devices)")
    for column in ("device", "status", "compared with", "flagged at", "ratio", "diff µg/m³"):
        table.add_column(column)
    for finding in sorted(findings, key=lambda f: (f.status == "ok", f.device_id)):
        flagged = to_datetime(finding.flagged_at).isoformat() if finding.flagged_at is not None else ""
        ratio, diff = f"{finding.ratio:.2f}", f"{finding.diff:+.1f}"
        table.add_row(finding.device_id, finding.status, finding.comparator, flagged, ratio, diff)
    console.print(table)
    attention = [f.device_id for f in findings if f.needs_attention]
    console.print(f"needs attention: {', '.join(attention) if attention else 'none'}", markup=False)


@app.command("show")
def show_command(
    *,
    device: Annotated[str | None, typer.Option("--device", help="Only this device's models")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, for scripts")] = False,
) -> None:
    """List stored calibration models (versions, validity, fit statistics)."""
    with connect() as conn:
        records = list_calibrations(conn, device)
    if as_json:
        for record in records:
            print(json.dumps(asdict(record), default=str, ensure_ascii=False))
        return
    table = Table(title="calibrations")
    for column in ("id", "device / type", "metric", "model", "valid from", "valid to", "n", "R²", "RMSE"):
        table.add_column(column)
    for record in records:
        after = (record.fit_stats or {}).get("after", {})
        table.add_row(
            str(record.id),
            record.device_id or f"default:{record.sensor_type}",
            record.metric,
            json.dumps(record.model),
            record.valid_from.isoformat() if record.valid_from else "-inf",
            record.valid_to.isoformat() if record.valid_to else "",
            str(after.get("n", "")),
            str(after.get("r2", "")),
            str(after.get("rmse", "")),
        )
    console.print(table)
