"""Shared fixtures: real PostgreSQL and real Mosquitto servers on free loopback ports.

One PostgreSQL server serves the whole session; each test gets a fresh database cloned
from a migrated template (fast, isolated). Each test gets its own Mosquitto, so no
persistent session or retained message leaks from one test into another.

`mosquitto` is open (anonymous clients, any client id): the pipeline tests publish from many
parallel C clients on arbitrary topics and ids. `closed_mosquitto` runs the production
listener from files `citysense device broker-files` writes (accounts, ACL,
use_username_as_clientid) and serves every identity and ACL test.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import psycopg
import pytest

from contracts.records import ReadingRow
from contracts.settings import Settings, get_settings
from devtools.local_broker import LocalMosquitto
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port
from devtools.processes import stop_process
from gateway.codecs.status import decode_status
from ingest.backend import Backend, current_backend
from ingest.batch_writer import Batch, BatchWriter, StatusRow
from ingest.broker_files import Operator, write_broker_files
from ingest.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "citysense_template"
_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """The session's server: Debian's PostgreSQL, or the one CITYSENSE_TEST_PG_BIN names, with
    CITYSENSE_TEST_PG_PRELOAD=timescaledb to run the whole suite on TimescaleDB."""
    settings = Settings()
    base = Path(f"/tmp/citysense-test-pg-{os.getpid()}")
    server = LocalPostgres(
        base / "data", free_port(), fsync=False, bindir=settings.test_pg_bin, preload=settings.test_pg_preload or None
    )
    try:
        server.start()
        migrate(server.create_database(TEMPLATE))
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_primary_and_standby() -> Iterator[tuple[LocalPostgres, LocalPostgres]]:
    """A primary of the test's own and a hot standby streaming from it (`pg_basebackup -R`), both
    on loopback, on the server CITYSENSE_TEST_PG_BIN / CITYSENSE_TEST_PG_PRELOAD name."""
    settings = Settings()
    base = Path(f"/tmp/citysense-test-replica-{os.getpid()}-{next(_db_counter)}")
    primary = LocalPostgres(base / "primary", free_port(), fsync=False, bindir=settings.test_pg_bin,
                            preload=settings.test_pg_preload or None)
    standby: LocalPostgres | None = None
    try:
        primary.start()
        standby = primary.start_standby(base / "standby", free_port())
        yield primary, standby
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def backend(pg_server: LocalPostgres) -> Backend:
    """The backend the suite runs on, read from the migrated template (never assumed)."""
    with psycopg.connect(pg_server.url(TEMPLATE)) as conn:
        return current_backend(conn)


@pytest.fixture
def database_url(pg_server: LocalPostgres) -> Iterator[str]:
    name = f"t{os.getpid()}_{next(_db_counter)}"
    url = pg_server.create_database(name, template=TEMPLATE)
    yield url
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture
def cli_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database that `citysense` commands run in-process (CliRunner) use: the one
    settings object reads CITYSENSE_DATABASE_URL, so its cache is cleared around the test."""
    monkeypatch.setenv("CITYSENSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    broker = LocalMosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    yield broker
    broker.stop()


StartClosedBroker = Callable[[str, Mapping[str, str], Sequence[Operator]], LocalMosquitto]


@pytest.fixture
def closed_mosquitto(tmp_path: Path) -> Iterator[StartClosedBroker]:
    """start(database_url, gateways, operators): a closed Mosquitto admitting the devices registered
    in that database now, the gateway accounts (name -> password) and the operators."""
    started: list[LocalMosquitto] = []

    def start(database_url: str, gateways: Mapping[str, str], operators: Sequence[Operator] = ()) -> LocalMosquitto:
        files = write_broker_files(database_url, tmp_path / "broker-files", gateways, operators)
        broker = LocalMosquitto.closed(tmp_path / "mosquitto-closed", free_port(), files)
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


class GatewayProcess:
    """`citysense gateway` in a child process, as in production, so tests can kill -9 it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citysense", "gateway"], env=self.env, cwd=REPO,
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = stop_process(self.proc, timeout=timeout)
        assert code is not None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_subscribed(self, timeout: float = 30.0, times: int = 1) -> GatewayProcess:
        """Block until the gateway's session is subscribed (`times` counts reconnections)."""
        wait_until(lambda: self.log().count("event=mqtt_subscribed") >= times, timeout, what="gateway subscribed")
        return self


def gateway_env(mqtt_url: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(
        CITYSENSE_MQTT_URL=mqtt_url, CITYSENSE_DATABASE_URL=database_url, CITYSENSE_GATEWAY_METRICS_PORT="0",
        CITYSENSE_MQTT_CLIENT_ID=f"test-gw-{next(_db_counter)}", CITYSENSE_LOG_LEVEL="INFO",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[object]:
    started: list[GatewayProcess] = []

    def start(mqtt_url: str, database_url: str, **extra: str) -> GatewayProcess:
        gw = GatewayProcess(gateway_env(mqtt_url, database_url, **extra), tmp_path / f"gateway-{len(started)}.log")
        started.append(gw.start())
        return gw

    yield start
    for gw in started:
        if gw.alive():
            gw.terminate()


def wait_until(predicate: object, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def count(database_url: str, sql: str, *args: object) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql.encode(), args or None).fetchone()
        return int(row[0]) if row else 0


def write_batch(url: str, *batches: Batch) -> None:
    """Write each batch through the batch writer production uses, all committed on return; in a
    thread of its own, so async tests (and Playwright's sync API, which keeps a loop running) may
    call it too."""
    async def run() -> None:
        writer = BatchWriter(url)
        try:
            for batch in batches:
                await writer.write(batch)
        finally:
            await writer.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


def write_batches(url: str, *batches: list[ReadingRow]) -> None:
    """Write each list of reading rows as one batch (write_batch)."""
    write_batch(url, *(Batch(readings=readings) for readings in batches))


def write_status(url: str, kind: str, device_id: str, doc: Mapping[str, object]) -> None:
    """One status message through the gateway's decoder and the batch writer (write_batch)."""
    decoded = decode_status(f"citysense/v1/{kind}/{device_id}/status", orjson.dumps(dict(doc)), time.time())
    assert decoded.status is not None
    write_batch(url, Batch(statuses=[StatusRow(device_id, time.time(), decoded.status)]))
