"""`citysense calibrate`: fit models against reference stations, re-apply them, check drift.

Every failure prints one line starting with ``error:`` and exits with status 1, so the
commands can be scripted by a bureau's cron jobs.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from calibration.drift import TUNABLES, DriftConfig, DriftFinding, Site, config_from
from calibration.fitting import MIN_POINTS_DEFAULT, FitError, FitKind
from calibration.models import CalibrationModelError
from calibration.reference_import import ReferenceFormatError, read_reference
from citysense.terminal import make_console, print_table
from contracts.settings import get_settings
from ingest.calibration_jobs import FitRequest, check_drift, fit_device
from ingest.calibration_store import StoreError, count_rows, get_device, list_calibrations
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


def _agreement_row(label: str, stats: dict[str, Any]) -> list[str]:
    def number(key: str, spec: str) -> str:
        value = stats.get(key)
        return "" if value is None or math.isnan(value) else format(value, spec)

    cells = (number("r2", ".3f"), number("rmse", ".2f"), number("mae", ".2f"), number("bias", "+.2f"))
    return [label, str(stats["n"]), *cells]


def _print_fit(outcome: dict[str, Any]) -> None:
    """The human report: the model on its own line (copyable JSON), then the agreement table."""
    console.print(f"device: {outcome['device_id']}", markup=False, highlight=False)
    console.print(f"model: {json.dumps(outcome['model'])}", markup=False, highlight=False)
    weighted = outcome["downweighted"]
    console.print(
        f"method: {outcome['method']}; {outcome['n']} paired hours, {weighted['count']} down-weighted, "
        f"{weighted['rejected']} left out",
        markup=False,
        highlight=False,
    )
    rows = [
        _agreement_row("all hours, raw", outcome["all"]["raw"]),
        _agreement_row("all hours, calibrated", outcome["all"]["calibrated"]),
        _agreement_row("kept hours, raw", outcome["kept"]["raw"]),
        _agreement_row("kept hours, calibrated", outcome["kept"]["calibrated"]),
    ]
    print_table(console, ["", "n", "R²", "RMSE", "MAE", "bias"], rows, right=frozenset({1, 2, 3, 4, 5}))


def _plot_path(device: str, plot: Path | None, report: Path | None) -> Path | None:
    """Where the fit picture goes: `--plot` as given, else beside a `--report` folder's JSON, else nowhere."""
    if plot is not None:
        return plot
    if report is not None:
        return report / f"fit-{device}.png"
    return None


@app.command("fit")
def fit_command(
    *,
    device: Annotated[str, typer.Option("--device", help="Device id to calibrate")],
    reference: Annotated[Path, typer.Option("--reference", help="Reference file: MOENV CSV or time,pm25[,rh]")],
    start: Annotated[str, typer.Option("--from", help="Start of the co-location period (ISO; UTC if no offset)")],
    end: Annotated[str, typer.Option("--to", help="End of the co-location period, exclusive")],
    kind: Annotated[str, typer.Option("--model", help="linear or multilinear_rh")] = "linear",
    robust: Annotated[
        bool, typer.Option("--robust", help="Tukey bisquare (redescending) instead of least squares")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="auto, moenv or generic")] = "auto",
    station: Annotated[str | None, typer.Option("--station", help="MOENV station name if the file has several")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of naive times in a generic file")] = None,
    unit: Annotated[str, typer.Option("--unit", help="Unit of the reference PM2.5: ug/m3 or mg/m3")] = "ug/m3",
    min_points: Annotated[int, typer.Option("--min-points", help="Refuse fewer paired hours")] = MIN_POINTS_DEFAULT,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the fit picture (PNG) here")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Folder for fit-<device>.json and fit-<device>.png")
    ] = None,
    save: Annotated[bool, typer.Option("--save/--dry-run", help="Store the model, or only report")] = True,
    valid_from: Annotated[str | None, typer.Option("--valid-from", help="Model start (default --from)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout, for scripts")] = False,
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
    picture = _plot_path(device, plot, report)
    if picture is not None:
        try:
            from calibration.plots import plot_fit  # noqa: PLC0415  (matplotlib is the `plots` extra)
        except ImportError as exc:
            fail(f"the plot needs matplotlib: pip install 'citysense[plots]' ({exc})")
    request = FitRequest(
        device_id=device,
        reference=ref,
        reference_name=reference.name,
        start=begin,
        end=finish,
        kind=fit_kind,
        robust=robust,
        min_points=min_points,
        save=save,
        valid_from=parse_when(valid_from, "--valid-from") if valid_from else None,
    )
    with connect() as conn:
        try:
            outcome = fit_device(conn, request)
        except FitError as exc:
            fail(f"fit refused: {exc}")
        except (CalibrationModelError, StoreError) as exc:
            fail(str(exc))
    answer = outcome.as_json()
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
    if picture is not None:
        plot_fit(outcome.result, picture, title=f"{device} vs {reference.name}")
        answer["plot"] = str(picture)
    if report is not None:
        (report / f"fit-{device}.json").write_text(json.dumps(answer, ensure_ascii=False, indent=2) + "\n", "utf-8")
    if as_json:
        print(json.dumps(answer, ensure_ascii=False))
        return
    for note in ref.notes:
        console.print(f"reference: {note}", markup=False, highlight=False)
    _print_fit(answer)
    if picture is not None:
        console.print(f"plot: {picture}", markup=False, highlight=False)
    if outcome.calibration_id is None:
        console.print("dry run: model not stored", markup=False)
        return
    console.print(
        f"stored calibration {outcome.calibration_id}; re-apply to history with: "
        f"citysense calibrate apply --device {device} --since {outcome.valid_from.date().isoformat()}",
        markup=False,
        highlight=False,
    )


@app.command("apply")
def apply_command(
    *,
    device: Annotated[str, typer.Option("--device", help="Device id")],
    since: Annotated[str, typer.Option("--since", help="Recompute rows from this time (ISO; UTC if no offset)")],
    until: Annotated[str | None, typer.Option("--until", help="Stop before this time (default: now)")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Metric to recompute")] = "pm25",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per committed batch")] = 5000,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (progress on stderr)")] = False,
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
        bar_console = err_console if as_json else console
        with Progress(*columns, console=bar_console, transient=as_json) as progress:
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
    if as_json:
        print(json.dumps(report.as_json()))
        return
    backend = report.aggregates_backend
    refreshed = f"aggregates refreshed ({backend})" if backend else "aggregates unchanged"
    console.print(
        f"{report.rows_seen} rows checked, {report.rows_changed} changed, "
        f"calibrations used {list(report.calibration_ids) or 'none (value = raw)'}; {refreshed}",
        markup=False,
    )


def attention_lines(findings: list[DriftFinding]) -> list[str]:
    """The summary under the drift table: drifting devices (a sensor to clean or re-calibrate) and
    devices that could not be checked (no comparator or too few hours: a visit or a co-location)
    are different work, so they are listed on separate lines."""
    drifting = sorted(f.device_id for f in findings if f.status == "drift")
    unchecked = sorted(f.device_id for f in findings if f.status == "insufficient_data")
    return [
        f"needs attention, drifting: {', '.join(drifting) if drifting else 'none'}",
        f"needs attention, insufficient data (cannot be checked): {', '.join(unchecked) if unchecked else 'none'}",
    ]


def with_drift_settings(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option per calibration.drift.TUNABLES setting (`--step-threshold` …), handed to it
    as a checked `config`: the admin API builds its parameters from the same table, so the two take the
    same settings with the same bounds and defaults."""
    signature = inspect.signature(command, eval_str=True)
    extra = [
        inspect.Parameter(
            t.name, inspect.Parameter.KEYWORD_ONLY, default=t.kind(t.default),
            annotation=Annotated[t.kind, typer.Option("--" + t.name.replace("_", "-"), help=t.help)],
        )
        for t in TUNABLES
    ]
    kept = [p for p in signature.parameters.values() if p.name != "config"]

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        settings = {t.name: values.pop(t.name) for t in TUNABLES}
        try:
            config = config_from(settings)
        except ValueError as exc:
            fail(str(exc))
        command(config=config, **values)

    wrapper.__signature__ = signature.replace(parameters=kept + extra)  # type: ignore[attr-defined]
    return wrapper


@app.command("drift")
@with_drift_settings
def drift_command(
    *,
    config: DriftConfig,
    days: Annotated[int, typer.Option("--days", min=1, help="Look back this many days from --until")] = 30,
    since: Annotated[str | None, typer.Option("--since", help="Start of the look-back (overrides --days)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End of the look-back (default: this hour)")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="Reference station file")] = None,
    reference_lat: Annotated[float | None, typer.Option("--reference-lat")] = None,
    reference_lon: Annotated[float | None, typer.Option("--reference-lon")] = None,
    station: Annotated[str | None, typer.Option("--station")] = None,
    tz: Annotated[str | None, typer.Option("--tz")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per device on stdout")] = False,
) -> None:
    """Compare each device with a co-located reference and/or its neighbours' median and list drifting ones."""
    finish = parse_when(until, "--until") if until else datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    begin = parse_when(since, "--since") if since else finish - timedelta(days=days)
    if finish <= begin:
        fail("--until must be after --since")
    ref_site: Site | None = None
    if reference is not None:
        if reference_lat is None or reference_lon is None:
            fail("--reference needs --reference-lat and --reference-lon")
        try:
            ref = read_reference(reference, station=station, tz=tz)
        except ReferenceFormatError as exc:
            fail(f"{reference}: {exc}")
        ref_site = Site(reference.stem, reference_lat, reference_lon, ref, is_reference=True)
    with connect() as conn:
        findings = check_drift(conn, begin, finish, config, ref_site)
    ordered = sorted(findings, key=lambda f: (f.status == "ok", f.device_id))
    if as_json:
        for finding in ordered:
            print(json.dumps(finding.as_json()))
        return
    console.print(
        f"drift from {begin.isoformat()} to {finish.isoformat()} ({len(findings)} devices)", markup=False
    )
    rows = []
    for finding in ordered:
        out = finding.as_json()
        rows.append([
            finding.device_id, finding.status, finding.comparator, out["flagged_at"] or "", out["onset"] or "",
            "" if out["ratio"] is None else f"{out['ratio']:.2f}", "" if out["diff"] is None else f"{out['diff']:+.1f}",
        ])
    print_table(console, ["device", "status", "compared with", "flagged at", "onset", "ratio", "diff µg/m³"], rows)
    for line in attention_lines(findings):
        console.print(line, markup=False)


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
    rows = []
    for record in records:
        after = (record.fit_stats or {}).get("after", {})
        rows.append([
            str(record.id),
            record.device_id or f"default:{record.sensor_type}",
            record.metric,
            json.dumps(record.model),
            record.valid_from.isoformat() if record.valid_from else "-inf",
            record.valid_to.isoformat() if record.valid_to else "",
            str(after.get("n", "")),
            str(after.get("r2", "")),
            str(after.get("rmse", "")),
        ])
    print_table(console, ["id", "device / type", "metric", "model", "valid from", "valid to", "n", "R²", "RMSE"], rows)
