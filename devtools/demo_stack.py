"""`citysense demo`: broker, database, gateway, API and a simulated fleet on one laptop.

Each service is a child process in its own session so that Ctrl-C stops them in order
(fleet, gateway, API, broker, database) and nothing is left running.
"""

from __future__ import annotations

import os
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

console = Console()


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
    console.print(f"[bold]citysense demo[/] data in {data}")
    console.print(f"starting {type(broker).__name__[5:].lower()} broker on 127.0.0.1:{mqtt_port} ...")
    broker.start()
    pg = LocalPostgres(data / "pg", _pick_port(5432))
    console.print(f"starting PostgreSQL ({pg.bindir}) on 127.0.0.1:{pg.port} ...")
    children: list[Child] = []
    stopper = threading.Event()
    try:
        pg.start()
        db_url = pg.create_database("citysense")
        backend, applied = migrate(db_url)
        console.print(f"database ready: backend={backend}, migrations applied now: {applied or 'none'}")
        boxes, spots = make_airboxes(airboxes), make_parking(parking)
        register_fleet(db_url, boxes, spots)
        api_port = _pick_port(settings.api_port)
        env = dict(os.environ)
        env.update(
            CITYSENSE_MQTT_URL=broker.url, CITYSENSE_DATABASE_URL=db_url, CITYSENSE_MQTT_PROTOCOL=protocol,
            CITYSENSE_API_PORT=str(api_port), CITYSENSE_GATEWAY_METRICS_PORT=str(_pick_port(9108)),
            CITYSENSE_MQTT_CLIENT_ID="citysense-demo-gateway",
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
        console.print(
            f"\n[bold green]citysense is running[/] (ready in {time.monotonic() - started:.0f} s)\n"
            f"  API            {api}   (docs {api}/docs)\n"
            f"  live map       {api}/map\n"
            f"  PM2.5 GeoJSON  {api}/v1/latest?metric=pm25\n"
            f"  health         {api}/v1/health\n"
            f"  gateway stats  http://127.0.0.1:{env['CITYSENSE_GATEWAY_METRICS_PORT']}/metrics\n"
            f"  MQTT broker    {redact_url(broker.url)}\n"
            f"  PostgreSQL     {redact_url(db_url)}\n"
            f"  logs           {data}/*.log\n"
            f"  fleet          {airboxes} air boxes + {parking} parking sensors every {interval_s:g} s"
            + (f", {host_devices} running the real firmware" if host_devices else "")
            + "\nPress Ctrl-C to stop."
        )
        signal.signal(signal.SIGTERM, lambda *_: stopper.set())
        while not stopper.is_set():
            for child in children:
                if child.proc.poll() is not None:
                    console.print(f"[red]{child.name} exited with {child.proc.returncode}; see {child.log_path}[/]")
                    stopper.set()
            stopper.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping ...")
        _stop_all([c for c in children if c.name in ("fleet", "firmware")])  # producers first
        _stop_all([c for c in children if c.name not in ("fleet", "firmware")])  # then gateway and API
        broker.stop()
        pg.stop()
        console.print("stopped.")


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
