"""`citysense demo`: broker, database, gateway, API and a simulated fleet on one laptop.

Each service is a child process in its own session so that Ctrl-C, SIGTERM or SIGHUP stop
them in order (fleet, gateway, API, broker, database) and nothing is left running: also when
SIGINT was ignored at start (a background job of a non-interactive shell ignores it) and when
stdout is a closed pipe (every line the demo prints may fail; stopping must not).

With Mosquitto the broker is closed, as in production (`closed_broker`): the gateway logs in
with its own account, the simulator with an operator account that may publish only for the
simulated fleet (owner `demo`), each firmware host device with its own token. The amqtt
fallback stays open (anonymous, any client id): it is a pip-only demo broker, not a deployment.

The demo starts with a past (`history_days`, 14 by default): the fleet's last two weeks, written
through the gateway's own pipeline before the live fleet starts (devtools/simulator/history.py),
with one box whose sensor drifts (DRIFTING_BOX) and one co-located with the synthetic reference
station in data/reference/. Grafana is not started; the banner prints the read-only database
role (deploy/postgres/roles.sql's reader) and the provisioning paths a local Grafana needs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
from rich.console import Console

from contracts.settings import Settings
from contracts.urls import redact_url
from devtools.local_broker import LocalAmqtt, LocalMosquitto, mosquitto_path
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port, port_is_open
from devtools.processes import stop_process
from devtools.simulator.fleet import DRIFTING_BOX, FleetModel, host_fleet_ids, make_airboxes, make_parking
from devtools.simulator.history import HISTORY_STEP_S, HistoryReport, write_history
from devtools.simulator.publisher import register_fleet
from ingest.broker_files import Operator, write_broker_files
from ingest.device_store import DeviceFields, register_devices
from ingest.migrate import migrate

DEMO_GATEWAY = "citysense-demo-gateway"
DEMO_OPERATOR = "citysense-sim"
DEMO_ALERTS = "citysense-demo-alerts"
DEMO_FLAG_LIGHT = "citysense-demo-flag"  # the display account firmware/host/hostflag.py logs in with
FLEET_OWNER = "demo"
REPO = Path(__file__).resolve().parents[1]
ROLES_SQL = REPO / "deploy" / "postgres" / "roles.sql"
GRAFANA_READER = "citysense_reader"
DRIFT_DAYS_BEFORE_START = 5.0  # the drifting box began losing gain this long before the first start
MAKER_DEVICES = [("demo-01", "airbox"), ("bay-01", "parking")]  # the ids of firmware/README.md's host runs


class _DemoConsole(Console):
    """Rich's console, except that a broken pipe silences it instead of exiting the process
    (rich's default raises SystemExit, which would skip stopping the children)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


console = _DemoConsole(soft_wrap=True)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DemoStopped(BaseException):
    """Raised in the main thread by a stop signal, so start-up waits unwind into the clean-up too."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise DemoStopped(signal.Signals(signum).name)


def _say(text: str) -> None:
    """Print to the terminal; a closed stdout (the reader went away) must not stop the clean-up."""
    with contextlib.suppress(OSError, ValueError):  # BrokenPipeError, or a closed file
        console.print(text)


def _pick_port(preferred: int) -> int:
    return preferred if not port_is_open(preferred) else free_port()


class Child:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc = subprocess.Popen(
            args, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
        )

    def stop(self, timeout: float = 12.0) -> None:
        stop_process(self.proc, timeout=timeout)


def run_demo(
    settings: Settings, airboxes: int, parking: int, interval_s: float, host_devices: int, history_days: float = 14.0
) -> None:
    data = settings.data_dir.absolute()
    data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    mqtt_port = _pick_port(1883)
    closed = mosquitto_path() is not None
    protocol = "5" if closed else "3.1.1"
    _say(f"[bold]citysense demo[/] data in {data}")
    pg = LocalPostgres(data / "pg", _pick_port(5432))
    broker: LocalMosquitto | LocalAmqtt | None = None
    children: list[Child] = []
    stopper = threading.Event()
    for signum in STOP_SIGNALS:  # explicit handlers: an inherited SIG_IGN for SIGINT is overridden too
        signal.signal(signum, _raise_stop)
    try:
        _say(f"starting PostgreSQL ({pg.bindir}) on 127.0.0.1:{pg.port} ...")
        pg.start()
        # the role and database the CLI's default URL names, so `citysense ...` in another shell
        # reaches the demo with nothing exported (when the default ports were free)
        db_url = pg.create_database("citysense", owner="citysense")
        backend, applied = migrate(db_url)
        _say(f"database ready: backend={backend}, migrations applied now: {applied or 'none'}")
        reader_password = grafana_reader(db_url, data)
        drift_since = drift_anchor(data, history_days)
        boxes, spots = make_airboxes(airboxes, drift_since=drift_since), make_parking(parking)
        register_fleet(db_url, boxes, spots)
        # the firmware devices are registered like real hardware: their own tokens, not the operator's
        # ... and so are the ones firmware/README.md runs by hand (MAKER_DEVICES): the closed broker's
        # accounts are written at start, so a device registered later could not log in before a restart
        firmware_ids = [i for ids in host_fleet_ids(host_devices) for i in ids]
        firmware_tokens = register_devices(
            db_url, [(i, DeviceFields(kind=kind, owner="demo-firmware")) for i, kind in
                     [(i, "parking" if "-parking-" in i else "airbox") for i in firmware_ids] + MAKER_DEVICES],
            rotate_token=True,
        )
        tokens_file = data / "firmware-tokens"
        tokens_file.write_text("".join(f"{reg.device_id}:{token}\n" for reg, token in firmware_tokens))
        tokens_file.chmod(0o600)
        _say(f"starting {'closed mosquitto' if closed else 'open amqtt'} broker on 127.0.0.1:{mqtt_port} ...")
        gateway_url = simulator_url = alerts_url = flag_url = ""
        if closed:
            broker, gateway_url, simulator_url, alerts_url, flag_url = closed_broker(db_url, data, mqtt_port)
        else:
            broker = LocalAmqtt(data / "amqtt", mqtt_port)
            gateway_url = simulator_url = alerts_url = flag_url = broker.url
        broker.start()
        api_port = _pick_port(settings.api_port)
        env = dict(os.environ)
        env.update(
            CITYSENSE_MQTT_URL=broker.url, CITYSENSE_DATABASE_URL=db_url, CITYSENSE_MQTT_PROTOCOL=protocol,
            CITYSENSE_API_PORT=str(api_port), CITYSENSE_GATEWAY_METRICS_PORT=str(_pick_port(9108)),
            CITYSENSE_MQTT_CLIENT_ID=DEMO_GATEWAY, CITYSENSE_ADMIN_TOKEN=admin_token(settings, data),
        )
        py = sys.executable
        children.append(Child("gateway", [py, "-m", "citysense", "gateway"], {**env, "CITYSENSE_MQTT_URL": gateway_url},
                              data / "gateway.log"))
        children.append(Child("api", [py, "-m", "citysense", "api"], env, data / "api.log"))
        history: HistoryReport | None = None
        if history_days > 0:  # while the gateway and the API start; the live fleet follows it
            _say(f"writing {history_days:g} days of history (a reading every {HISTORY_STEP_S / 60:g} min) ...")
            history = write_history(db_url, FleetModel(boxes, spots), history_days)
        children.append(
            Child(
                "fleet",
                [py, "-m", "citysense", "simulate", "--airboxes", str(airboxes), "--parking", str(parking),
                 "--interval", str(interval_s), "--drift-since", f"{drift_since:.0f}"],
                {**env, "CITYSENSE_MQTT_URL": simulator_url}, data / "simulator.log",
            )
        )
        if host_devices:
            children.append(
                Child("firmware", [py, "-m", "citysense", "firmware", "fleet", "--count", str(host_devices),
                                   "--broker", broker.url, "--interval", str(interval_s),
                                   "--tokens", str(tokens_file)], env,
                      data / "firmware.log")
            )
        # the evaluator starts once the history is written and the live fleet runs: started before,
        # its first cycle would open "every box silent" and "ingest lag" alerts for the history's gap
        alerts_metrics = str(_pick_port(9110))
        alerts_env = {**env, "CITYSENSE_MQTT_URL": alerts_url, "CITYSENSE_ALERTS_METRICS_PORT": alerts_metrics}
        children.append(Child("alerts", [py, "-m", "citysense", "alerts", "run"], alerts_env, data / "alerts.log"))
        api = f"http://127.0.0.1:{api_port}"
        broker_note = f"(closed: accounts in {data}/mosquitto-auth)" if closed else "(open)"
        _wait_http(f"{api}/v1/health", 30)
        _say(
            f"\n[bold green]citysense is running[/] (ready in {time.monotonic() - started:.0f} s)\n"
            f"  API            {api}   (docs {api}/docs)\n"
            f"  live map       {api}/map\n"
            f"{_school_page_line(api, boxes[0].school if boxes else None)}"
            f"  PM2.5 GeoJSON  {api}/v1/latest?metric=pm25\n"
            f"  health         {api}/v1/health\n"
            f"  gateway stats  http://127.0.0.1:{env['CITYSENSE_GATEWAY_METRICS_PORT']}/metrics\n"
            f"  alerts         {api}/v1/alerts   (evaluated every {settings.alerts_interval_s:g} s; school flags "
            f"on citysense/v1/school/+/flag; stats http://127.0.0.1:{alerts_metrics}/metrics)\n"
            f"{_flag_light_line(flag_url, boxes[0].school if boxes else None)}"
            f"  MQTT broker    {redact_url(broker.url)}   {broker_note}\n"
            f"  PostgreSQL     {redact_url(db_url)}\n"
            f"  admin token    {env['CITYSENSE_ADMIN_TOKEN']}   (kept in {data}/admin-token)\n"
            f"  logs           {data}/*.log\n"
            f"  fleet          {airboxes} air boxes + {parking} parking sensors every {interval_s:g} s"
            + (f", {host_devices} running the real firmware" if host_devices else "")
            + f"\n  history        {_history_note(history)}"
            + (f"\n  drifting box   {DRIFTING_BOX} (its sensor loses gain since "
               f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(drift_since))} UTC: `citysense calibrate drift`)"
               if any(b.device_id == DRIFTING_BOX for b in boxes) else "")
            + _grafana_note(pg.port, reader_password, env["CITYSENSE_GATEWAY_METRICS_PORT"])
            + _exports_needed(env)
            + "\nPress Ctrl-C to stop."
        )
        while not stopper.is_set():
            for child in children:
                if child.proc.poll() is not None:
                    _say(f"[red]{child.name} exited with {child.proc.returncode}; see {child.log_path}[/]")
                    stopper.set()
            stopper.wait(1.0)
    except (KeyboardInterrupt, DemoStopped):
        pass
    finally:
        for signum in STOP_SIGNALS:  # a second signal must not interrupt the clean-up half-way
            signal.signal(signum, signal.SIG_IGN)
        _say("stopping ...")
        _stop_all([c for c in children if c.name in ("fleet", "firmware")])  # producers first
        _stop_all([c for c in children if c.name not in ("fleet", "firmware")])  # then gateway and API
        if broker is not None:
            broker.stop()
        pg.stop()
        _say("stopped.")


def closed_broker(db_url: str, data: Path, port: int) -> tuple[LocalMosquitto, str, str, str, str]:
    """Mosquitto from generated files, and the gateway's, the simulator's, the alert evaluator's and
    a flag light's URLs with their own accounts. Passwords are made once and kept (mode 600) in the data folder,
    like the admin token (an account a data folder of an older demo lacks is added)."""
    secrets_file = data / "mosquitto-accounts"
    password = dict(line.split(":", 1) for line in secrets_file.read_text().split()) if secrets_file.exists() else {}
    accounts = (DEMO_GATEWAY, DEMO_OPERATOR, DEMO_ALERTS, DEMO_FLAG_LIGHT)
    if any(name not in password for name in accounts):
        for name in accounts:
            password.setdefault(name, secrets.token_urlsafe(18))
        secrets_file.write_text("".join(f"{name}:{pw}\n" for name, pw in password.items()))
        secrets_file.chmod(0o600)
    files = write_broker_files(db_url, data / "mosquitto-auth", {DEMO_GATEWAY: password[DEMO_GATEWAY]},
                               [Operator(DEMO_OPERATOR, password[DEMO_OPERATOR], FLEET_OWNER)],
                               alerts={DEMO_ALERTS: password[DEMO_ALERTS]},
                               displays={DEMO_FLAG_LIGHT: password[DEMO_FLAG_LIGHT]})
    broker = LocalMosquitto.closed(data / "mosquitto", port, files)
    gateway, simulator, alerts, flag_light = (broker.url_for(name, password[name]) for name in accounts)
    return broker, gateway, simulator, alerts, flag_light


def _history_note(history: HistoryReport | None) -> str:
    if history is None:
        return "none (--history 0)"
    if not history.windows:
        return f"kept from the last run ({history.seconds:.0f} s to check)"
    days = sum(hi - lo for lo, hi in history.windows) / 86400.0
    return (f"{days:.1f} days written now, a reading every {HISTORY_STEP_S / 60:g} min: "
            f"{history.readings:,} readings, {history.parking_events:,} parking events in {history.seconds:.0f} s")


def grafana_environment(pg_port: int, reader_password: str, prometheus_url: str) -> dict[str, str]:
    """The variables grafana/provisioning reads, with this demo's values (a test keeps the two sets equal)."""
    return {
        "CITYSENSE_GRAFANA_DB_HOST": "127.0.0.1",
        "CITYSENSE_GRAFANA_DB_PORT": str(pg_port),
        "CITYSENSE_GRAFANA_DB_USER": GRAFANA_READER,
        "CITYSENSE_GRAFANA_DB_PASSWORD": reader_password,
        "CITYSENSE_PROMETHEUS_URL": prometheus_url,
        "CITYSENSE_GRAFANA_DASHBOARDS": str(REPO / "grafana" / "dashboards"),
    }


def _grafana_note(pg_port: int, reader_password: str | None, metrics_port: str) -> str:
    """How to point a local Grafana at this demo (docs/bureaus.md, "Grafana")."""
    if reader_password is None:
        return ""
    env = grafana_environment(pg_port, reader_password, "http://127.0.0.1:9090")
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    provisioning = REPO / "grafana" / "provisioning"
    return (
        "\n  Grafana        not started; point a local Grafana at this demo (docs/bureaus.md, \"Grafana\"):"
        f"\n    data source    PostgreSQL 127.0.0.1:{pg_port}, database citysense, user {GRAFANA_READER}"
        f" (read-only), password {reader_password}, TLS off"
        f"\n    provisioning   {provisioning} (dashboards in {env['CITYSENSE_GRAFANA_DASHBOARDS']})"
        f"\n    run            env {exports} GF_PATHS_PROVISIONING={provisioning} grafana-server"
        f"\n    gateway panels need a Prometheus at {env['CITYSENSE_PROMETHEUS_URL']} scraping 127.0.0.1:{metrics_port}"
    )


def grafana_reader(db_url: str, data: Path) -> str | None:
    """The read-only role Grafana logs in as (deploy/postgres/roles.sql's reader, granted on the
    tables that exist now), with a password made once and kept in the data folder; None without
    the deploy folder (an installed package rather than a checkout)."""
    if not ROLES_SQL.exists():
        return None
    path = data / "grafana-reader-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18) + "\n")
        path.chmod(0o600)
    password = path.read_text().strip()
    with psycopg.connect(db_url, autocommit=True, options=f"-c citysense.reader_password={password}") as conn:
        conn.execute(ROLES_SQL.read_bytes())
    return password


def drift_anchor(data: Path, history_days: float) -> float:
    """When the drifting box began to lose gain: DRIFT_DAYS_BEFORE_START before the first start (within
    the history), kept in the data folder so that a restarted demo continues the same drift."""
    path = data / "drift-since"
    if not path.exists():
        path.write_text(f"{time.time() - min(history_days, DRIFT_DAYS_BEFORE_START) * 86400.0:.0f}\n")
    return float(path.read_text().strip())


def admin_token(settings: Settings, data: Path) -> str:
    """The demo's admin token: CITYSENSE_ADMIN_TOKEN if set, else one made once and kept in the data folder."""
    if settings.admin_token:
        return settings.admin_token
    path = data / "admin-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _exports_needed(env: dict[str, str]) -> str:
    """What another shell must export to reach this demo: nothing, unless a default port was taken."""
    lines = [
        f"  export {name}={env[name]}"
        for name, field in (("CITYSENSE_DATABASE_URL", "database_url"), ("CITYSENSE_MQTT_URL", "mqtt_url"))
        if env[name] != Settings.model_fields[field].default
    ]
    if not lines:
        return ""
    return "\nA default port was taken; in another shell, before `citysense ...`:\n" + "\n".join(lines)


def _stop_all(children: list[Child], timeout: float = 12.0) -> None:
    """Signal every child at once, then wait: stopping takes the slowest child's time, not the sum."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    for child in children:
        child.stop(timeout)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _flag_light_line(flag_url: str, school: str | None) -> str:
    """The command that shows a school's flag on a fake LED (firmware/README.md), with the display account."""
    if not school:
        return ""
    return (f"  flag light     python firmware/host/hostflag.py --broker {shlex.quote(flag_url)} "
            f"--school {shlex.quote(school)}\n")


def _school_page_line(api: str, school: str | None) -> str:
    """The demo's line for the page of one of its schools (none without air boxes)."""
    return f"  school page    {api}/schools/{quote(school)}   ({school})\n" if school else ""
