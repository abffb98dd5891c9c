"""`citysense demo`: broker, database, gateway, API and a simulated fleet on one laptop.

Each service is a child process in its own session so that Ctrl-C, SIGTERM or SIGHUP stop
them in order (fleet, gateway, API, broker, database) and nothing is left running: also when
SIGINT was ignored at start (a background job of a non-interactive shell ignores it) and when
stdout is a closed pipe (every line the demo prints may fail; stopping must not).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console

from contracts.settings import Settings
from contracts.urls import redact_url
from devtools.local_broker import LocalAmqtt, LocalMosquitto, mosquitto_path
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port, port_is_open
from devtools.processes import stop_process
from devtools.simulator.fleet import make_airboxes, make_parking
from devtools.simulator.publisher import register_fleet
from ingest.migrate import migrate


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


def run_demo(settings: Settings, airboxes: int, parking: int, interval_s: float, host_devices: int) -> None:
    data = settings.data_dir.absolute()
    data.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    mqtt_port = _pick_port(1883)
    broker: LocalMosquitto | LocalAmqtt
    if mosquitto_path():
        broker = LocalMosquitto(data / "mosquitto", mqtt_port)
        protocol = "5"
    else:
        broker = LocalAmqtt(data / "amqtt", mqtt_port)
        protocol = "3.1.1"
    _say(f"[bold]citysense demo[/] data in {data}")
    _say(f"starting {type(broker).__name__[5:].lower()} broker on 127.0.0.1:{mqtt_port} ...")
    pg = LocalPostgres(data / "pg", _pick_port(5432))
    children: list[Child] = []
    stopper = threading.Event()
    for signum in STOP_SIGNALS:  # explicit handlers: an inherited SIG_IGN for SIGINT is overridden too
        signal.signal(signum, _raise_stop)
    try:
        broker.start()
        _say(f"starting PostgreSQL ({pg.bindir}) on 127.0.0.1:{pg.port} ...")
        pg.start()
        # the role and database the CLI's default URL names, so `citysense ...` in another shell
        # reaches the demo with nothing exported (when the default ports were free)
        db_url = pg.create_database("citysense", owner="citysense")
        backend, applied = migrate(db_url)
        _say(f"database ready: backend={backend}, migrations applied now: {applied or 'none'}")
        boxes, spots = make_airboxes(airboxes), make_parking(parking)
        register_fleet(db_url, boxes, spots)
        api_port = _pick_port(settings.api_port)
        env = dict(os.environ)
        env.update(
            CITYSENSE_MQTT_URL=broker.url, CITYSENSE_DATABASE_URL=db_url, CITYSENSE_MQTT_PROTOCOL=protocol,
            CITYSENSE_API_PORT=str(api_port), CITYSENSE_GATEWAY_METRICS_PORT=str(_pick_port(9108)),
            CITYSENSE_MQTT_CLIENT_ID="citysense-demo-gateway", CITYSENSE_ADMIN_TOKEN=admin_token(settings, data),
        )
        py = sys.executable
        children.append(Child("gateway", [py, "-m", "citysense", "gateway"], env, data / "gateway.log"))
        children.append(Child("api", [py, "-m", "citysense", "api"], env, data / "api.log"))
        children.append(
            Child(
                "fleet",
                [py, "-m", "citysense", "simulate", "--airboxes", str(airboxes), "--parking", str(parking),
                 "--interval", str(interval_s)],
                env, data / "simulator.log",
            )
        )
        if host_devices:
            children.append(
                Child("firmware", [py, "-m", "citysense", "firmware", "fleet", "--count", str(host_devices),
                                   "--broker", broker.url, "--interval", str(interval_s)], env,
                      data / "firmware.log")
            )
        api = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api}/v1/health", 30)
        _say(
            f"\n[bold green]citysense is running[/] (ready in {time.monotonic() - started:.0f} s)\n"
            f"  API            {api}   (docs {api}/docs)\n"
            f"  live map       {api}/map\n"
            f"  PM2.5 GeoJSON  {api}/v1/latest?metric=pm25\n"
            f"  health         {api}/v1/health\n"
            f"  gateway stats  http://127.0.0.1:{env['CITYSENSE_GATEWAY_METRICS_PORT']}/metrics\n"
            f"  MQTT broker    {redact_url(broker.url)}\n"
            f"  PostgreSQL     {redact_url(db_url)}\n"
            f"  admin token    {env['CITYSENSE_ADMIN_TOKEN']}   (kept in {data}/admin-token)\n"
            f"  logs           {data}/*.log\n"
            f"  fleet          {airboxes} air boxes + {parking} parking sensors every {interval_s:g} s"
            + (f", {host_devices} running the real firmware" if host_devices else "")
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
        broker.stop()
        pg.stop()
        _say("stopped.")


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
