"""`citysense bench`: measure the ingest path and the query API on this machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Benchmarks on local servers (loopback only): ingest and API.", no_args_is_help=True)


@app.command()
def ingest(
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated devices")] = 1000,
    rate: Annotated[float, typer.Option(
        min=10, max=200_000, help="Offered messages/s (5 readings each); above capacity, so full load saturates"
    )] = 30_000,
    duration: Annotated[float, typer.Option(min=2, max=600, help="Seconds per gateway phase")] = 30.0,
    limit_duration: Annotated[float, typer.Option(min=1, max=120, help="Seconds per limit/baseline phase")] = 10.0,
    publishers: Annotated[int, typer.Option(min=1, max=16, help="Load generator processes")] = 2,
    gateways: Annotated[int, typer.Option(min=1, max=8, help="Gateway processes (>1: shared subscription)")] = 1,
    quick: Annotated[bool, typer.Option(help="Small, < 60 s run for CI (overrides the sizes)")] = False,
    profile: Annotated[bool, typer.Option(help="py-spy the gateway during the full-load window")] = False,
    closed_broker: Annotated[bool, typer.Option(
        "--closed-broker/--open-broker",
        help="Production's broker: password file, ACL, each client's session its username (--open-broker: anonymous)",
    )] = True,
    peer: Annotated[
        str | None, typer.Option(help="Also run a peer in the same run: 'node-red' (installed with npm when missing)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """Gateway throughput and latency vs raw COPY, broker pass-through and a naive baseline."""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415
    from devtools.bench.ingest_run import IngestBench, IngestOptions  # noqa: PLC0415
    from devtools.bench.report import ingest_table, show, write_json  # noqa: PLC0415

    setup_logging("WARNING")
    if peer not in (None, "node-red"):
        raise typer.BadParameter(f"unknown peer {peer!r}: the one peer is 'node-red'", param_hint="--peer")
    if quick:
        options = dataclasses.replace(
            IngestOptions.quick_run(), profile=profile, peer=peer, closed_broker=closed_broker
        )
    else:
        if devices < rate / 500:
            raise typer.BadParameter("need devices >= rate/500 so each device's timestamps stay >= 2 ms apart")
        options = IngestOptions(
            devices=devices, rate=rate, duration_s=duration, limit_s=limit_duration, publishers=publishers,
            gateways=gateways, profile=profile, peer=peer, closed_broker=closed_broker,
        )
    results = IngestBench(options).run()
    show(ingest_table(results))
    typer.echo(f"results: {write_json(results, 'ingest', out)}")


@app.command()
def backfill(
    devices: Annotated[int, typer.Option(min=1, max=10_000, help="Boxes coming back online at once")] = 200,
    hours: Annotated[float, typer.Option(min=0.1, max=72, help="Hours of queued readings per box")] = 24.0,
    profile: Annotated[bool, typer.Option(help="py-spy the gateway for 8 s of the replay")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """Every box replays its flash queue (batch messages of 20 records) through the gateway, vs raw COPY."""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415
    from devtools.bench.backfill_run import BackfillOptions, run_backfill  # noqa: PLC0415
    from devtools.bench.report import write_json  # noqa: PLC0415

    setup_logging("WARNING")
    results = run_backfill(BackfillOptions(devices=devices, hours=hours, profile=profile))
    replay = results["replay"]
    typer.echo(
        f"backfill of {devices} boxes x {hours:g} h: {replay['readings_stored']:,}/{replay['readings_expected']:,} "
        f"readings in {replay['seconds']} s = {replay['readings_s']:,.0f} readings/s "
        f"({replay['messages_s']:,.0f} batch msg/s); raw COPY {results['limit_copy']['rows_s']:,.0f} rows/s; "
        f"ratio {results['ratio_vs_copy']}"
    )
    for entry in results.get("profile", {}).get("self", [])[:8]:
        typer.echo(f"  profile: {entry['function']} {entry['pct']}%")
    typer.echo(f"results: {write_json(results, 'backfill', out)}")


@app.command()
def soak(
    minutes: Annotated[float, typer.Option(min=0.5, max=240, help="Minutes of steady load")] = 10.0,
    rate: Annotated[float, typer.Option(min=10, max=50_000, help="Offered messages/s (5 readings each)")] = 2000.0,
    devices: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """Steady load for many minutes: is the gateway's memory flat, is anything lost?"""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415
    from devtools.bench.report import write_json  # noqa: PLC0415
    from devtools.bench.soak_run import SoakOptions, run_soak  # noqa: PLC0415

    setup_logging("WARNING")
    if devices < rate / 500:
        raise typer.BadParameter("need devices >= rate/500 so each device's timestamps stay >= 2 ms apart")
    results = run_soak(SoakOptions(devices=devices, rate=rate, minutes=minutes))
    mem, loss = results["memory"], results["loss"]
    typer.echo(
        f"soak {minutes:g} min at {results['published_msg_s']:,} msg/s: gateway RSS first minute "
        f"{mem['first_min_mb']} MB, last minute {mem['last_min_mb']} MB, peak {mem['peak_mb']} MB, "
        f"slope {mem['slope_mb_per_min']} MB/min; "
        f"lost {loss['lost_messages']} of {loss['published_and_broker_acked']:,}"
    )
    typer.echo(f"results: {write_json(results, 'soak', out)}")


@app.command("import")
def import_history(
    boxes: Annotated[int, typer.Option(min=1, max=100, help="Boxes of the co-location CSV")] = 8,
    days: Annotated[int, typer.Option(min=1, max=365, help="Days of 1-minute readings per box")] = 60,
    csv: Annotated[Path | None, typer.Option(help="Where the CSV is kept for the next run (default: temp)")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """`citysense import` of a co-location CSV (fresh, again, overlapping) beside a raw COPY of the same
    rows, and a year of a reference station's hourly MOENV file; readings/s and CPU per reading."""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415

    setup_logging("WARNING")
    _import_bench(boxes, days, csv, out)


def _import_bench(boxes: int, days: int, csv: Path | None, out: Path | None) -> dict[str, Any]:
    """The import bench run, its table shown and its JSON written (`bench import` and `bench all`)."""
    from devtools.bench.import_run import default_csv, run_import_bench  # noqa: PLC0415
    from devtools.bench.report import import_table, show, write_json  # noqa: PLC0415

    results = run_import_bench(csv or default_csv(boxes, days), boxes, days)
    show(import_table(results))
    typer.echo(f"results: {write_json(results, 'import', out)}")
    return results


@app.command()
def api(
    devices: Annotated[int, typer.Option(min=1, max=10_000, help="Devices with data")] = 1000,
    days: Annotated[float, typer.Option(min=0.1, max=60, help="Days of 1-minute readings per device")] = 14,
    requests: Annotated[int, typer.Option(min=10, max=10_000, help="Requests per query kind")] = 200,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """Generate devices x days of pm25/t/rh per minute, then time the API's main reads over HTTP."""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415
    from devtools.bench.api_run import ApiBench, ApiOptions  # noqa: PLC0415
    from devtools.bench.report import api_table, show, write_json  # noqa: PLC0415

    setup_logging("WARNING")
    results = ApiBench(ApiOptions(devices=devices, days=days, requests=requests)).run()
    show(api_table(results))
    typer.echo(f"results: {write_json(results, 'api', out)}")


@app.command()
def alerts(
    devices: Annotated[int, typer.Option(min=10, max=100_000, help="Air boxes")] = 10_000,
    schools: Annotated[int, typer.Option(min=1, max=10_000, help="Schools the boxes are spread over")] = 500,
    interval: Annotated[float, typer.Option(min=0.5, max=600, help="Seconds between two readings of a box")] = 10.0,
    cycle: Annotated[float, typer.Option(min=0.2, max=600, help="CITYSENSE_ALERTS_INTERVAL_S of the run")] = 10.0,
    silent: Annotated[int, typer.Option(min=1, max=10_000, help="Boxes that go silent")] = 100,
    crossing_schools: Annotated[int, typer.Option(min=1, max=1000, help="Schools driven into USG")] = 20,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """One evaluation cycle over a city, and condition -> delivered webhook delays (p50/p95/max)."""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415
    from devtools.bench.alerts_run import AlertsBench, AlertsOptions  # noqa: PLC0415
    from devtools.bench.report import write_json  # noqa: PLC0415

    setup_logging("WARNING")
    results = AlertsBench(AlertsOptions(devices, min(schools, devices), interval, cycle, min(silent, devices),
                                        min(crossing_schools, schools))).run()
    s, c = results["silent_after_condition"], results["school_after_crossing"]
    typer.echo(
        f"alerts: {devices:,} boxes, {schools} schools ({results['backend']}): cycle {results['cycle_s'][-1]} s; "
        f"silent box -> webhook after k x interval p50 {s['p50_s']} s, p95 {s['p95_s']} s, max {s['max_s']} s "
        f"({results['silent_missing']} missing); band crossing -> webhook p50 {c['p50_s']} s, p95 {c['p95_s']} s, "
        f"max {c['max_s']} s ({results['school_missing']} missing)"
    )
    typer.echo(f"results: {write_json(results, 'alerts', out)}")


@app.command("all")
def all_benches(
    duration: Annotated[float, typer.Option(min=2, max=600, help="Seconds per gateway phase (ingest)")] = 60.0,
    peer: Annotated[bool, typer.Option("--peer/--no-peer", help="Run the Node-RED peer in the ingest bench")] = True,
    out: Annotated[Path | None, typer.Option(help="Folder for the JSON (default bench/results/)")] = None,
) -> None:
    """`make bench`: ingest (with the Node-RED peer and a profile), backfill, history import and API,
    one after the other (never at once), then one table of every target with its figure and ratio."""
    from citysense.logging_setup import setup_logging  # noqa: PLC0415
    from devtools.bench.api_run import ApiBench, ApiOptions  # noqa: PLC0415
    from devtools.bench.backfill_run import BackfillOptions, run_backfill  # noqa: PLC0415
    from devtools.bench.ingest_run import IngestBench, IngestOptions  # noqa: PLC0415
    from devtools.bench.report import api_table, ingest_table, show, write_json  # noqa: PLC0415
    from devtools.bench.summary import (  # noqa: PLC0415
        api_rows,
        backfill_rows,
        import_rows,
        ingest_rows,
        map_page_rows,
        summary_table,
    )

    setup_logging("WARNING")
    ingest_results = IngestBench(IngestOptions(duration_s=duration, profile=True,
                                               peer="node-red" if peer else None)).run()
    show(ingest_table(ingest_results))
    typer.echo(f"results: {write_json(ingest_results, 'ingest', out)}")
    backfill_results = run_backfill(BackfillOptions())
    typer.echo(f"results: {write_json(backfill_results, 'backfill', out)}")
    import_results = _import_bench(8, 60, None, out)
    api_results = ApiBench(ApiOptions()).run()
    show(api_table(api_results))
    typer.echo(f"results: {write_json(api_results, 'api', out)}")
    rows = [*ingest_rows(ingest_results), *backfill_rows(backfill_results), *import_rows(import_results),
            *api_rows(api_results),
            *map_page_rows(api_results)]
    show(summary_table(rows, str(ingest_results["machine"].get("backend"))))
