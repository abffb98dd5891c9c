"""Run the real air-box and parking applications on CPython against fake hardware.

The firmware modules are imported unchanged; `machine`, `network`, `ntptime`
and `umqtt.simple` come from firmware/host/shims (CPython only), the chips
from fakehw.py, and the devices talk MQTT to a real broker. Each device runs
in its own thread with its own flash directory (config, queue, seq). The
umqtt stand-in delivers subscribed messages (config, receipts) through
check_msg() and while publish() waits for a PUBACK, as umqtt.simple does, so
a device keeps its readings until a gateway's receipt covers them; with a
reading `count`, `drain_s` keeps the session up afterwards until they are.

An air box is built exactly as main.py builds one on a board: lib/sensorconfig.py maps its
configuration (`pm_sensor`, `th_sensor`, `extra_sensors`; `config=` overrides the runner's
defaults) to drivers, here on fakehw.FakeBuses instead of the board's buses. So a new driver
listed in sensorconfig, with its fake chip in fakehw.I2C_CHIPS, runs here with no edit to
this file.

Also a script: `python firmware/host/hostrun.py --broker mqtt://127.0.0.1:1883
--airbox demo-01 --parking park-01 --interval 2`, which is how
`citysense.firmware_cli.start_host_devices` starts a fleet in a subprocess.
"""

# ruff: noqa: PLC0415 - firmware modules are imported after install_paths() puts them on sys.path

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOST_DIR = Path(__file__).resolve().parent
FIRMWARE_DIR = HOST_DIR.parent
SHIMS_DIR = HOST_DIR / "shims"

logger = logging.getLogger("citysense.firmware.host")


def install_paths() -> None:
    """Put the shims, firmware/lib, firmware/ and firmware/host first on sys.path (idempotent)."""
    for path in (HOST_DIR, FIRMWARE_DIR, FIRMWARE_DIR / "lib", SHIMS_DIR):
        text = str(path)
        if text in sys.path:
            sys.path.remove(text)
        sys.path.insert(0, text)


install_paths()

import log as fw_log  # noqa: E402  (firmware module, needs install_paths first)


def _sink(line: str) -> None:
    logger.info("dev=%s %s", threading.current_thread().name, line)


fw_log.sink = _sink


def parse_broker_url(url: str) -> tuple[str, int, str, str]:
    """mqtt://[user[:password]@]host[:port] -> (host, port, user, password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} (use mqtt://)")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    return parts.hostname, parts.port or 1883, parts.username or "", parts.password or ""


class HostDevice:
    """One device: config on a temp 'flash', fake chips, the real app, a thread."""

    def __init__(
        self,
        kind: str,
        device_id: str,
        broker_url: str,
        interval_s: float = 60.0,
        data_dir: Path | None = None,
        count: int | None = None,
        password: str = "",
        tick_ms: int = 50,
        pms_garbage_every: int = 0,
        scenario: Any = None,
        receipt_timeout_s: int | None = None,
        drain_s: float = 0.0,
        config: dict[str, object] | None = None,
    ) -> None:
        """`count` readings (None: until stopped); then, for up to `drain_s`, keep the session
        up until the gateway's receipts cover every reading kept in flash. `config` holds device
        config keys (firmware/README.md's table, e.g. `{"extra_sensors": "scd41"}`) over the
        runner's own; they are checked by the firmware's config rules."""
        if kind not in ("airbox", "parking"):
            raise ValueError(f"unknown device kind {kind!r}")
        self.kind = kind
        self.device_id = device_id
        self.interval_s = interval_s
        self.count = count
        self.drain_s = drain_s
        self.receipt_timeout_s = receipt_timeout_s
        self.tick_ms = tick_ms
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"citysense-{device_id}-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        host, port, user, url_password = parse_broker_url(broker_url)
        self._build(host, port, user, password or url_password, pms_garbage_every, scenario, config or {})
        self.thread = threading.Thread(target=self._run, name=device_id, daemon=True)

    def _path(self, name: str) -> str:
        return str(self.data_dir / name)

    def _build(
        self, host: str, port: int, user: str, password: str, garbage: int, scenario: Any, extra: dict[str, object]
    ) -> None:
        import config
        import fakehw
        import machine
        import ntptime
        from clock import Clock
        from device import Device
        from flashqueue import FlashQueue
        from seq import SeqCounter
        from session import Session
        from umqtt.simple import MQTTClient
        from watchdog import Watchdog

        interval = max(1, round(self.interval_s))
        settings: dict[str, object] = {
            "id": self.device_id,
            "kind": self.kind,
            "wifi_ssid": "host",
            "mqtt_host": host,
            "mqtt_port": port,
            "mqtt_user": user,
            "mqtt_password": password,
            "interval_s": interval,
            "settle_s": 0,
            "frames": 3,
            "status_every_s": max(10, interval * 10),
            "heartbeat_every_s": max(10, interval * 10),
            "wdt_ms": 0,
            "queue_slots": 256,
        }
        if self.receipt_timeout_s is not None:
            settings["receipt_timeout_s"] = self.receipt_timeout_s
        settings.update(extra)
        config.check(dict(settings))
        Path(self._path("config.json")).write_text(json.dumps(settings))
        cfg = config.Config(self._path("config.json"))
        self.cfg = cfg
        session = Session(MQTTClient, cfg["id"], cfg["kind"], host, port, cfg["mqtt_user"], cfg["mqtt_password"], 30)
        self.queue = FlashQueue(self._path("queue.bin"), cfg["queue_slots"])
        self.device = Device(
            cfg,
            session,
            self.queue,
            SeqCounter(self._path("seq.txt")),
            Clock(ntptime),
            Watchdog(machine, 0),
            "power_on",
            lambda: ("127.0.0.1", -55),
        )
        seed = zlib.crc32(self.device_id.encode()) & 0xFFFF
        if self.kind == "airbox":
            from airbox.app import AirBox
            from clock import sleep_ms
            from sensorconfig import build_sensors

            self.buses = fakehw.FakeBuses(seed=seed, garbage_every=garbage)
            self.uart = self.buses.uart_port
            pm, sensors = build_sensors(cfg, self.buses, sleep_ms, self.device.error)
            self.app: Any = AirBox(
                self.device,
                cfg,
                pm,
                sensors,
                frame_gap_ms=10,
                interval_ms=int(self.interval_s * 1000),  # host runs may use sub-second intervals
            )
        else:
            import magtraces
            from drivers.qmc5883l import QMC5883L
            from parking.app import ParkingSensor

            if scenario is None:
                scenario = magtraces.Scenario("host", 8 * 3600, seed=seed).add_visits(80, 40, 240, 20, start_s=40)
            self.mag_chip = fakehw.FakeQMC5883L(scenario.samples())
            i2c = fakehw.FakeI2C({0x0D: self.mag_chip})
            self.app = ParkingSensor(
                self.device,
                cfg,
                QMC5883L(i2c),
                battery_mv=lambda: 3012,
                baseline_path=self._path("baseline.json"),
                tick_ms=self.tick_ms,
            )
        self.device.on_config = self.app.reconfigure

    def _sleep(self, ms: int) -> None:
        self.stop_event.wait(ms / 1000.0)

    def _drain(self) -> None:
        """Service without new readings until nothing is kept in flash, `drain_s` passes, or stop()."""
        end = time.monotonic() + self.drain_s
        while len(self.queue) and time.monotonic() < end and not self.stop_event.is_set():
            self.device.service()
            self._sleep(self.tick_ms)

    def _run(self) -> None:
        from device import run_loop

        try:
            run_loop(self.device, self.app, self._sleep, self.stop_event.is_set, self.count)
            self.device.service()  # send what the last cycle queued
            self._drain()
        except BaseException as exc:
            self.error = exc
            logger.exception("host device %s failed", self.device_id)
        finally:
            self.device.shutdown()

    def start(self) -> HostDevice:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)


class HostFleet:
    """Several host devices; `stop()` ends them all."""

    def __init__(self, devices: list[HostDevice]) -> None:
        self.devices = devices

    def start(self) -> HostFleet:
        for dev in self.devices:
            dev.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        for dev in self.devices:
            dev.stop_event.set()
        for dev in self.devices:
            dev.join(timeout)


def build_fleet(
    broker_url: str, airboxes: list[str], parking: list[str], interval_s: float, tokens: dict[str, str] | None = None
) -> HostFleet:
    """Host devices on one broker; `tokens` gives each device its own token (its MQTT password,
    the username being its id), as a closed broker requires."""
    tokens = tokens or {}
    devices = [HostDevice("airbox", i, broker_url, interval_s, password=tokens.get(i, "")) for i in airboxes]
    devices += [HostDevice("parking", i, broker_url, interval_s, password=tokens.get(i, "")) for i in parking]
    return HostFleet(devices)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run host (fake hardware) citysense devices.")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--airbox", action="append", default=[])
    parser.add_argument("--parking", action="append", default=[])
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    fleet = build_fleet(args.broker, args.airbox, args.parking, args.interval).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
