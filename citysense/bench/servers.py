"""The servers a bench run starts on this machine, and the CPU each of them uses.

Everything listens on 127.0.0.1 and lives in one temporary folder that `BenchServers.close`
removes: a Mosquitto per phase (so no persistent session of one phase costs the next one
anything), one PostgreSQL with fsync on, and the gateway as a `python -m citysense
gateway` child process configured by CITYSENSE_* variables, exactly as in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from citysense.local_broker import LocalMosquitto
from citysense.local_postgres import LocalPostgres
from citysense.ports import free_port, wait_for_port
from ingest.migrate import migrate

REPO = Path(__file__).resolve().parent.parent.parent
TEMPLATE = "bench_template"


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds of named process groups between `start` and `stop`.

    A group is a function returning its processes now; a process that starts during the
    window counts from zero, one that exits during it is lost (short-lived ones only).
    """

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._t0 = 0.0
        self.seconds: dict[str, float] = {}
        self.wall_s = 0.0

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap: dict[str, dict[int, float]] = {}
        for name, find in self.groups.items():
            per_pid: dict[int, float] = {}
            for proc in find():
                try:
                    per_pid[proc.pid] = _cpu_seconds(proc)
                except psutil.Error:
                    continue
            snap[name] = per_pid
        return snap

    def start(self) -> None:
        self._start = self._snapshot()
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Percent of one core per group over the window."""
        end = self._snapshot()
        self.wall_s = time.monotonic() - self._t0
        for name, per_pid in end.items():
            before = self._start.get(name, {})
            self.seconds[name] = sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in per_pid.items())
        return self.percent()

    def percent(self) -> dict[str, float]:
        if self.wall_s <= 0:
            return {}
        return {name: round(100.0 * s / self.wall_s, 1) for name, s in self.seconds.items()}


def with_children(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def pid_running(cmdline_part: str) -> int | None:
    """The pid of the process whose command line mentions `cmdline_part` (a unique path)."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if any(cmdline_part in part for part in cmd):
            return int(proc.info["pid"])
    return None


class BenchServers:
    """A temporary folder with one PostgreSQL (fsync on) and brokers started on demand."""

    def __init__(self, *, fsync: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="citysense-bench-"))
        self.pg = LocalPostgres(self.root / "pg" / "data", free_port(), fsync=fsync)
        self.brokers: list[LocalMosquitto] = []

    def start_postgres(self) -> None:
        self.pg.start()
        migrate(self.pg.create_database(TEMPLATE))

    def database(self, name: str) -> str:
        """A fresh migrated database cloned from the template."""
        return self.pg.create_database(name, template=TEMPLATE)

    def postgres_pid(self) -> int | None:
        try:
            return int((self.pg.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start_broker(self, name: str) -> LocalMosquitto:
        broker = LocalMosquitto(self.root / f"mosquitto-{name}", free_port())
        broker.start()
        self.brokers.append(broker)
        return broker

    @staticmethod
    def broker_pid(broker: LocalMosquitto) -> int | None:
        return pid_running(str(broker.workdir / "mosquitto.conf"))

    def close(self) -> None:
        for broker in self.brokers:
            broker.stop()
        self.pg.remove()
        shutil.rmtree(self.root, ignore_errors=True)


class GatewayChild:
    """`python -m citysense gateway` with its /metrics on a free loopback port."""

    def __init__(self, mqtt_url: str, database_url: str, log_path: Path, **settings: str) -> None:
        self.metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
        env.update(
            CITYSENSE_MQTT_URL=mqtt_url, CITYSENSE_DATABASE_URL=database_url,
            CITYSENSE_GATEWAY_METRICS_PORT=str(self.metrics_port), CITYSENSE_MQTT_CLIENT_ID="bench-gateway",
            CITYSENSE_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO),
        )
        # batch and queue knobs set by the caller's environment reach the gateway unchanged
        env.update({k: v for k, v in os.environ.items() if k.startswith(("CITYSENSE_BATCH_", "CITYSENSE_QUEUE_"))})
        env.update({f"CITYSENSE_{k.upper()}": v for k, v in settings.items()})
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citysense", "gateway"], env=env, cwd=REPO, stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Ready when /metrics answers and the MQTT session is up."""
        wait_for_port(self.metrics_port, timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}; see {self.log_path}")
            if self.metric("citysense_gateway_mqtt_connected") == 1.0 or self._log_says("mqtt_connected"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"gateway not connected after {timeout:.0f} s; see {self.log_path}")

    def _log_says(self, event: str) -> bool:
        try:
            return event in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str) -> float:
        """Sum of every sample of `name` (all label sets); 0 when absent."""
        try:
            text = self.metrics_text()
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[-1])
        return total

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)
