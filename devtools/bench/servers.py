"""The servers a bench run starts on this machine, and the CPU each of them uses.

Everything listens on 127.0.0.1 and lives in one temporary folder that `BenchServers.close`
removes: a Mosquitto per phase (so no persistent session of one phase costs the next one
anything), one PostgreSQL with fsync on, and the gateway as a `python -m citysense
gateway` child process configured by CITYSENSE_* variables, exactly as in production.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil

from contracts.settings import Settings
from devtools.local_broker import LocalMosquitto
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port, wait_for_port
from devtools.processes import stop_process
from ingest.backend import Backend
from ingest.broker_files import mosquitto_hash, write_broker_files
from ingest.migrate import migrate

REPO = Path(__file__).resolve().parent.parent.parent
TEMPLATE = "bench_template"
PLAIN_TEMPLATE = "bench_template_plain"
LOADER_ACL = """
# the bench's load generators: publish readings for any air box (devices publish their own only)
user {name}
topic write citysense/v1/airbox/+/up
"""


@dataclass(frozen=True)
class ClosedBroker:
    """A Mosquitto with production's closed listener (password file, ACL, session = username):
    the gateway replicas' URLs with their own accounts, and one account per load-generator process."""

    broker: LocalMosquitto
    gateway_urls: list[str]
    loaders: tuple[tuple[str, str], ...]


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds of named process groups between `start` and `stop`.

    A group is a function returning its processes now. A sampler thread reads every
    process's CPU time every `interval_s`, so one that exits before `stop` still counts up
    to its last sample, and one that starts during the window counts from zero (if it lives
    until the next refresh of the groups). The groups are looked up again only every
    `refresh_s`: finding a process's children reads every process's /proc entry, which at
    each sample cost the machine under test ~5 % of a core.
    """

    def __init__(
        self, groups: dict[str, Callable[[], list[psutil.Process]]], interval_s: float = 0.25, refresh_s: float = 2.0
    ) -> None:
        self.groups = groups
        self.interval_s = interval_s
        self.refresh_s = refresh_s
        self._members: dict[str, list[psutil.Process]] = {}
        self._found_at = -1e9
        self._start: dict[str, dict[int, float]] = {}
        self._last: dict[str, dict[int, float]] = {}
        self._t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seconds: dict[str, float] = {}
        self.wall_s = 0.0

    def _snapshot(self) -> dict[str, dict[int, float]]:
        if time.monotonic() - self._found_at >= self.refresh_s:
            self._members = {name: find() for name, find in self.groups.items()}
            self._found_at = time.monotonic()
        snap: dict[str, dict[int, float]] = {}
        for name, members in self._members.items():
            per_pid: dict[int, float] = {}
            for proc in members:
                try:
                    per_pid[proc.pid] = _cpu_seconds(proc)
                except psutil.Error:
                    continue
            snap[name] = per_pid
        return snap

    def _merge(self, snap: dict[str, dict[int, float]]) -> None:
        for name, per_pid in snap.items():
            self._last.setdefault(name, {}).update(per_pid)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._merge(self._snapshot())

    def start(self) -> None:
        self._start = self._snapshot()
        self._last = {name: dict(per_pid) for name, per_pid in self._start.items()}
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Percent of one core per group over the window."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._found_at = -1e9  # a last full look, for processes started since the last refresh
        self._merge(self._snapshot())
        self.wall_s = time.monotonic() - self._t0
        for name, per_pid in self._last.items():
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
        """The server is the suite's: CITYSENSE_TEST_PG_BIN / CITYSENSE_TEST_PG_PRELOAD pick it
        (e.g. TimescaleDB), and the report says which backend ran."""
        settings = Settings()
        self.root = Path(tempfile.mkdtemp(prefix="citysense-bench-"))
        self.pg = LocalPostgres(
            self.root / "pg" / "data", free_port(), fsync=fsync, bindir=settings.test_pg_bin,
            preload=settings.test_pg_preload or None,
        )
        self.brokers: list[LocalMosquitto] = []

    def start_postgres(self) -> Backend:
        """Start the server and migrate the template; returns the backend the bench runs on.

        On a TimescaleDB server a second template is migrated as plain PostgreSQL
        (`migrate(..., allow_timescaledb=False)`), so one run can measure both backends."""
        self.pg.start()
        backend, _applied = migrate(self.pg.create_database(TEMPLATE))
        if backend == "timescaledb":
            migrate(self.pg.create_database(PLAIN_TEMPLATE), allow_timescaledb=False)
        return backend

    def database(self, name: str, *, plain: bool = False) -> str:
        """A fresh migrated database cloned from the template (`plain`: the plain-PostgreSQL one)."""
        return self.pg.create_database(name, template=PLAIN_TEMPLATE if plain else TEMPLATE)

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

    def start_closed_broker(self, name: str, database_url: str, gateways: int, loaders: int) -> ClosedBroker:
        """Production's listener: the registered devices' accounts and ACL from `write_broker_files`
        (the same files `citysense device broker-files` writes), a gateway account per replica, and
        `loaders` load-generator accounts appended (a bench-only block: no deployment has one)."""
        root = self.root / f"mosquitto-{name}"
        gateway_accounts = {f"citysense-bench-gateway-{i}": secrets.token_urlsafe(12) for i in range(gateways)}
        files = write_broker_files(database_url, root / "auth", gateway_accounts)
        loader_accounts = tuple((f"citysense-bench-load-{i}", secrets.token_urlsafe(12)) for i in range(loaders))
        with files.passwords.open("a") as out:
            out.writelines(f"{user}:{mosquitto_hash(password)}\n" for user, password in loader_accounts)
        with files.acl.open("a") as out:
            out.writelines(LOADER_ACL.format(name=user) for user, _ in loader_accounts)
        broker = LocalMosquitto.closed(root, free_port(), files)
        broker.start()
        self.brokers.append(broker)
        return ClosedBroker(broker, [broker.url_for(u, p) for u, p in gateway_accounts.items()], loader_accounts)

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
            CITYSENSE_LOG_LEVEL="INFO", PYTHONPATH=str(REPO),
        )
        # batch, queue and protocol knobs set in the caller's environment reach the gateway unchanged
        knobs = ("CITYSENSE_BATCH_", "CITYSENSE_QUEUE_", "CITYSENSE_MQTT_PROTOCOL", "CITYSENSE_RECEIPT")
        env.update({k: v for k, v in os.environ.items() if k.startswith(knobs)})
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
        code = stop_process(self.proc, timeout=timeout)
        self._log.close()
        return int(code or 0)


def _account_of(mqtt_url: str) -> str | None:
    """The username of a URL with credentials (on a closed broker the client id must equal it)."""
    user = urlsplit(mqtt_url).username
    return unquote(user) if user else None


class GatewayGroup:
    """One gateway, or several sharing the topics through an MQTT shared subscription
    (the architecture's way to scale out): counters are summed over the group."""

    def __init__(self, count: int, mqtt_url: str | list[str], database_url: str, folder: Path) -> None:
        """`mqtt_url`: one URL for every replica (an open broker), or one per replica (each its own
        account on a closed broker, its client id the account name as production requires)."""
        shared = {"mqtt_shared_group": "citysense"} if count > 1 else {}
        urls = mqtt_url if isinstance(mqtt_url, list) else [mqtt_url] * count
        self.members = [
            GatewayChild(
                urls[i], database_url, folder / f"gateway-{i}.log",
                mqtt_client_id=_account_of(urls[i]) or f"bench-gateway-{i}", **shared,
            )
            for i in range(count)
        ]

    def wait_ready(self, timeout: float = 30.0) -> None:
        for gw in self.members:
            gw.wait_ready(timeout)

    def metric(self, name: str) -> float:
        return sum(gw.metric(name) for gw in self.members)

    def processes(self) -> list[psutil.Process]:
        return [p for gw in self.members for p in with_children(gw.proc.pid)]

    def stop(self) -> None:
        for gw in self.members:
            gw.stop()
