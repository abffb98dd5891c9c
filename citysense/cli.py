"""The `citysense` command: one sub-command for every job a user runs."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from citysense.import_cli import import_command
from citysense.logging_setup import setup_logging
from citysense.terminal import make_console
from contracts.settings import Settings, get_settings
from contracts.urls import redact_url

DATABASE_CONNECT_TIMEOUT_S = 4
"""How long a command waits for the database before saying it cannot reach it (libpq's connect_timeout)."""


def database_problem(exc: BaseException, url: str, variable: str = "CITYSENSE_DATABASE_URL") -> str | None:
    """The one line for a database that has no citysense schema or cannot be reached; None for any other error.

    A missing table means `db migrate` has not run (or not since an upgrade); a connection error
    (no SQLSTATE, class 08, 28 authorization, 3D000 no such database) names the redacted URL and
    its variable. Query errors (a statement timeout, say) are not connection problems: None.
    """
    import asyncpg  # noqa: PLC0415 - only when a command failed
    import psycopg  # noqa: PLC0415

    from ingest.backend import SchemaMissing  # noqa: PLC0415

    if isinstance(exc, psycopg.errors.UndefinedTable | asyncpg.exceptions.UndefinedTableError):  # the gateway: asyncpg
        return str(SchemaMissing())
    if isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(("08", "28")) or exc.sqlstate == "3D000"
    ):
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"cannot reach the database at {redact_url(url)} ({variable}): {reason}"
    return None


class CitysenseApp(typer.Typer):
    """The CLI: whatever the command, a database without the schema or out of reach is one line, not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            try:
                url = get_settings().database_url
            except ValueError:  # the settings themselves are invalid: that error, not ours
                raise exc from None
            message = database_problem(exc, url)
            if message is None:
                raise
            console.print(f"[red]error:[/] {escape(message)}")
            raise SystemExit(1) from None


app = CitysenseApp(
    help="citysense: open city sensing. Air boxes and parking sensors -> MQTT -> PostgreSQL/TimescaleDB -> API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema and maintenance jobs.", no_args_is_help=True)
device_app = typer.Typer(help="Register and list devices.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(device_app, name="device")
console = make_console(stderr=True)


def _settings() -> Settings:
    try:
        settings = get_settings()
    except Exception as exc:  # noqa: BLE001 - a bad environment variable is a one-line error
        console.print(f"[red]error:[/] invalid configuration: {exc}")
        raise typer.Exit(2) from None
    setup_logging(settings.log_level)
    return settings


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/] {escape(message)}")  # escaped: an id pattern like [a-z0-9-]{3,64} stays
    return typer.Exit(code)


@app.command()
def demo(
    airboxes: Annotated[int, typer.Option(min=1, max=5000, help="Simulated air boxes")] = 200,
    parking: Annotated[int, typer.Option(min=0, max=5000, help="Simulated parking sensors")] = 50,
    interval: Annotated[float, typer.Option(min=1.0, help="Seconds between readings of each device")] = 10.0,
    host_devices: Annotated[int, typer.Option(min=0, max=20, help="Devices running the real firmware")] = 3,
    history: Annotated[float, typer.Option(min=0, max=90, help="Days of history to start with (0 = none)")] = 14,
) -> None:
    """Start broker, database, gateway, API and a simulated fleet; Ctrl-C stops everything."""
    from devtools.demo_stack import run_demo  # noqa: PLC0415 - heavy imports only for this command

    settings = _settings()
    try:
        run_demo(settings, airboxes, parking, interval, host_devices if _has_firmware() else 0, history)
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise fail(str(exc)) from None


@app.command()
def gateway() -> None:
    """Run the MQTT -> database gateway (configured by CITYSENSE_* variables)."""
    from gateway.service import GatewayStartError, run_gateway  # noqa: PLC0415

    settings = _settings()
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(run_gateway(settings))
    except GatewayStartError as exc:
        raise fail(str(exc)) from None


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (default CITYSENSE_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CITYSENSE_API_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=16)] = 1,
) -> None:
    """Serve the query API with uvicorn."""
    import uvicorn  # noqa: PLC0415

    from calibration.aqi import AqiError, get_scale  # noqa: PLC0415

    settings = _settings()
    try:
        get_scale(settings.aqi_default_scale)
    except AqiError as exc:
        raise fail(f"CITYSENSE_AQI_DEFAULT_SCALE: {exc}", 2) from None
    bind_host, bind_port = host or settings.api_host, port or settings.api_port
    _port_free_or_fail(bind_host, bind_port, "CITYSENSE_API_PORT (or --port)")
    _database_reachable_or_fail(settings.database_url, "CITYSENSE_DATABASE_URL")
    if settings.database_read_url:
        _database_reachable_or_fail(settings.database_read_url, "CITYSENSE_DATABASE_READ_URL")
    uvicorn.run(
        "api.main:app", host=bind_host, port=bind_port, workers=workers,
        log_level=settings.log_level.lower(), access_log=False,
    )


def _port_free_or_fail(host: str, port: int, variable: str) -> None:
    """Bind the port as the server will (SO_REUSEADDR), and let go: taken is one line naming it and its variable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise fail(f"port {port} on {host} is taken ({exc.strerror}): stop what holds it, "
                       f"or set {variable} to another port") from None


def _database_reachable_or_fail(url: str, variable: str) -> None:
    """Connect once, within DATABASE_CONNECT_TIMEOUT_S: a wrong URL is one line at once, not a pool's 30 s wait."""
    import psycopg  # noqa: PLC0415

    try:
        psycopg.connect(url, connect_timeout=DATABASE_CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        message = database_problem(exc, url, variable)
        if message is None:
            raise
        raise fail(message) from None


@app.command()
def simulate(
    airboxes: Annotated[int, typer.Option(min=0, max=100_000)] = 200,
    parking: Annotated[int, typer.Option(min=0, max=100_000)] = 50,
    interval: Annotated[float, typer.Option(min=0.05)] = 10.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = None,
    drift_since: Annotated[
        float | None, typer.Option(help="Unix time from which one box (tp-school-0003) loses gain, 10 %/day")
    ] = None,
) -> None:
    """Publish a simulated fleet to CITYSENSE_MQTT_URL."""
    from devtools.simulator.fleet import make_airboxes, make_parking  # noqa: PLC0415
    from devtools.simulator.publisher import FleetPublisher  # noqa: PLC0415

    settings = _settings()
    stop = threading.Event()
    publisher = FleetPublisher(
        settings.mqtt_url, make_airboxes(airboxes, drift_since=drift_since), make_parking(parking), interval
    )
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        n = publisher.run(stop, duration)
    except KeyboardInterrupt:
        stop.set()
        n = publisher.published
    except OSError as exc:
        raise fail(f"cannot reach the broker at {redact_url(settings.mqtt_url)}: {exc}") from None
    console.print(f"published {n} messages")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the schema migrations (idempotent)."""
    from ingest.migrate import migrate  # noqa: PLC0415

    settings = _settings()
    try:
        backend, applied = migrate(settings.database_url, require_timescaledb=settings.require_timescaledb)
    except Exception as exc:  # noqa: BLE001
        raise fail(f"migration failed: {exc}") from None
    console.print(f"backend={backend} applied={','.join(applied) or 'nothing (up to date)'}")


@db_app.command("maintain")
def db_maintain() -> None:
    """Run aggregate refresh, compression and retention now, in the foreground."""
    from ingest.backend import BackendError  # noqa: PLC0415
    from ingest.maintenance import run_maintenance  # noqa: PLC0415

    settings = _settings()
    try:
        days = settings.dead_letter_retention_days
        for line in run_maintenance(settings.database_url, settings.retention_days, days):
            console.print(line, markup=False)
    except BackendError as exc:
        raise fail(str(exc)) from None


KindOption = Annotated[str | None, typer.Option(help="airbox or parking (a new device: airbox)")]
NameOption = Annotated[str | None, typer.Option()]
LatOption = Annotated[float | None, typer.Option(min=-90, max=90)]
LonOption = Annotated[float | None, typer.Option(min=-180, max=180)]
SensorOption = Annotated[str | None, typer.Option(help="e.g. pms5003 (a new air box: pms5003); none: no sensor type")]
DevEuiOption = Annotated[str | None, typer.Option(
    "--dev-eui", help="A LoRaWAN parking sensor's EUI-64 (16 hex digits): its ChirpStack uplinks are this device's"
)]


@device_app.command("register")
def device_register(
    device_id: Annotated[str, typer.Argument(help="Device id, [a-z0-9-]{3,64}")],
    kind: KindOption = None, name: NameOption = None, school: NameOption = None, site: NameOption = None,
    lat: LatOption = None, lon: LonOption = None, sensor_type: SensorOption = None, owner: NameOption = None,
    city: NameOption = None, district: NameOption = None, authority: NameOption = None,
    dev_eui: DevEuiOption = None,
    rotate_token: Annotated[bool, typer.Option(
        "--rotate-token", help="The id is registered already: issue a new token (the old one stops working)"
    )] = False,
) -> None:
    """Register a device and print its MQTT credentials (the token is shown once).

    Options not given keep what is stored; an id the gateway met first keeps its data."""
    from ingest.device_store import DeviceRegisteredAlready, new_token, register_device  # noqa: PLC0415

    settings = _settings()
    token = new_token()
    try:
        done = register_device(
            settings.database_url, device_id=device_id, token=token, rotate_token=rotate_token, kind=kind,
            name=name, site=site, school=school, lat=lat, lon=lon, sensor_type=sensor_type, owner=owner,
            city=city, district=district, authority=authority, dev_eui=dev_eui,
        )
    except (ValueError, DeviceRegisteredAlready) as exc:
        raise fail(str(exc)) from None
    verb = "rotated the token of" if rotate_token and not done.created else "registered"
    typer.echo(f"{verb} {device_id}\nMQTT username: {device_id}\nMQTT password: {token}\n"
               f"topic: citysense/v1/{done.kind}/{device_id}/up")


@device_app.command("update")
def device_update(
    device_id: Annotated[str, typer.Argument(help="Device id")],
    kind: KindOption = None, name: NameOption = None, school: NameOption = None, site: NameOption = None,
    lat: LatOption = None, lon: LonOption = None, sensor_type: SensorOption = None, owner: NameOption = None,
    city: NameOption = None, district: NameOption = None, authority: NameOption = None,
    dev_eui: DevEuiOption = None,
) -> None:
    """Change the fields given (the others, and the token, stay)."""
    from ingest.device_store import DeviceFields, DeviceNotFound, update_device  # noqa: PLC0415

    settings = _settings()
    try:
        update_device(settings.database_url, device_id, DeviceFields(
            kind, name, site, school, lat, lon, sensor_type, owner, city, district, authority, dev_eui
        ))
    except (ValueError, DeviceNotFound) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"updated {device_id}")


@device_app.command("retire")
def device_retire(device_id: Annotated[str, typer.Argument(help="Device id")]) -> None:
    """Retire a device: its data stays, the gateway stops treating it as registered at once."""
    from ingest.device_store import DeviceNotFound, retire_device  # noqa: PLC0415

    settings = _settings()
    try:
        retired_at = retire_device(settings.database_url, device_id)
    except (ValueError, DeviceNotFound) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"retired {device_id} at {retired_at.isoformat()}")


@device_app.command("broker-files")
def device_broker_files(
    out: Annotated[Path, typer.Option(help="Folder for the mosquitto password and acl files")] = Path(
        "deploy/mosquitto"
    ),
    gateway: Annotated[list[str], typer.Option(
        help="A gateway replica's account, also its CITYSENSE_MQTT_CLIENT_ID (repeat per replica)"
    )] = ["citysense-gateway-1"],  # noqa: B006 - typer reads the default, nothing mutates it
    operator: Annotated[list[str], typer.Option(
        help="NAME=OWNER: an operator account (the simulator) that publishes for OWNER's devices only"
    )] = [],  # noqa: B006
    alerts: Annotated[list[str], typer.Option(
        help="The alert evaluator's account (`citysense alerts run`): it may write the schools' flags only"
    )] = [],  # noqa: B006
    display: Annotated[list[str], typer.Option(
        help="A school flag light's account (its firmware device_id): it may read the schools' flags only"
    )] = [],  # noqa: B006
    passwords_file: Annotated[Path | None, typer.Option(
        help="name:password lines for the accounts; else each from CITYSENSE_<NAME>_MQTT_PASSWORD"
    )] = None,
) -> None:
    """Export Mosquitto password and ACL files: registered devices, gateway, operator, alerts and display accounts."""
    from ingest.broker_files import Operator, account_passwords, write_broker_files  # noqa: PLC0415

    settings = _settings()
    pairs = [o.partition("=") for o in operator]
    if any(not sep or not owner for _name, sep, owner in pairs):
        raise fail("--operator takes NAME=OWNER, e.g. citysense-sim=demo")
    try:
        secret = account_passwords(
            [*gateway, *(name for name, _, _ in pairs), *alerts, *display], passwords_file, os.environ
        )
        files = write_broker_files(
            settings.database_url, out, {name: secret[name] for name in gateway},
            [Operator(name, secret[name], owner) for name, _, owner in pairs],
            alerts={name: secret[name] for name in alerts}, displays={name: secret[name] for name in display},
        )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"wrote {files.passwords} ({files.devices} devices, {len(gateway)} gateways, {len(pairs)} operators, "
        f"{len(alerts)} alerts, {len(display)} displays) "
        f"and {files.acl}; reload mosquitto (SIGHUP) to apply"
    )


@device_app.command("config")
def device_config(
    device_id: Annotated[str, typer.Argument(help="Device id")],
    assignments: Annotated[list[str], typer.Argument(help="key=value, e.g. interval_s=120")],
    version: Annotated[int, typer.Option(help="Config version; devices apply only newer versions")] = 1,
    kind: Annotated[str, typer.Option(help="airbox or parking")] = "airbox",
) -> None:
    """Publish a retained config message that the device applies at its next connection."""
    from gateway.device_config import parse_assignments, publish_config  # noqa: PLC0415

    settings = _settings()
    try:
        topic = publish_config(settings.mqtt_url, kind, device_id, version, parse_assignments(assignments))
    except (ValueError, TimeoutError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # refused, unknown host, unreachable: say which broker
        raise fail(f"cannot reach the broker at {redact_url(settings.mqtt_url)} (CITYSENSE_MQTT_URL): "
                   f"{exc.strerror or exc}") from None
    typer.echo(f"published retained config version {version} on {topic}")


@device_app.command("list")
def device_list() -> None:
    """List registered and auto-registered devices."""
    import psycopg  # noqa: PLC0415

    settings = _settings()
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, kind, registered, coalesce(school, site, ''), lat, lon FROM devices ORDER BY device_id"
        ).fetchall()
    typer.echo("\t".join(("device_id", "kind", "registered", "school_or_site", "lat", "lon")))  # header
    for r in rows:
        typer.echo("\t".join("" if v is None else str(v) for v in r))


def _has_firmware() -> bool:
    return (Path(__file__).parent / "firmware_cli.py").exists()


def _register_optional(module: str, name: str) -> None:
    """Sub-apps that live in their own modules (firmware, calibrate, bench)."""
    import importlib  # noqa: PLC0415

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return
    app.add_typer(mod.app, name=name)


for _module, _name in (
    ("citysense.firmware_cli", "firmware"), ("citysense.calibrate_cli", "calibrate"), ("citysense.bench_cli", "bench"),
    ("citysense.alerts_cli", "alerts"),
):
    _register_optional(_module, _name)
app.command("import")(import_command)
