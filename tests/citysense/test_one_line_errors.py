"""What a newcomer meets first fails in one line that says what to change, never a traceback or a 500."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from devtools.local_postgres import LocalPostgres
from devtools.ports import free_port
from tests.conftest import REPO


def test_a_taken_metrics_port_is_one_line_naming_the_port_and_its_variable(database_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
        env.update(CITYSENSE_DATABASE_URL=database_url, CITYSENSE_GATEWAY_METRICS_PORT=str(port),
                   CITYSENSE_MQTT_URL="mqtt://127.0.0.1:1", PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-m", "citysense", "gateway"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=30, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 1 and str(port) in lines[0] and "CITYSENSE_GATEWAY_METRICS_PORT" in lines[0], lines
    assert "Traceback" not in proc.stdout + proc.stderr


def test_an_unmigrated_database_answers_503_saying_to_migrate(pg_server: LocalPostgres) -> None:
    url = pg_server.create_database("never_migrated")
    try:
        with TestClient(create_app(Settings(database_url=url))) as http:
            for path in ("/v1/devices", "/v1/latest?metric=pm25"):
                r = http.get(path)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert "citysense db migrate" in r.json()["detail"]
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS never_migrated WITH (FORCE)")


def run_cli(*args: str, timeout: float = 60, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(PYTHONPATH=str(REPO), CITYSENSE_GATEWAY_METRICS_PORT="0", CITYSENSE_MQTT_URL="mqtt://127.0.0.1:1")
    env.update({f"CITYSENSE_{key.upper()}": value for key, value in settings.items()})
    return subprocess.run([sys.executable, "-m", "citysense", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    return errors[0]


@pytest.fixture
def unmigrated_url(pg_server: LocalPostgres) -> Iterator[str]:
    name = f"unmigrated_{os.getpid()}_{next(_names)}"
    yield pg_server.create_database(name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


_names = itertools.count()


@pytest.mark.parametrize("command", [
    ["device", "list"], ["device", "register", "box-01"], ["device", "update", "box-01", "--name", "A"],
    ["device", "retire", "box-01"], ["db", "maintain"], ["calibrate", "drift"], ["gateway"],
], ids=" ".join)
def test_every_command_before_db_migrate_says_run_db_migrate(unmigrated_url: str, command: list[str]) -> None:
    line = _one_error_line(run_cli(*command, database_url=unmigrated_url))
    assert line == "error: the database has no citysense schema: run `citysense db migrate`", line


def test_health_of_an_unmigrated_database_says_schema_missing(
    unmigrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(Settings(database_url=unmigrated_url))) as http:
        r = http.get("/v1/health")
    assert "event=schema_missing hint='the database has no citysense schema: run `citysense db migrate`'" in caplog.text
    assert r.status_code == 503
    assert r.json()["database"] == "schema missing: the database has no citysense schema: run `citysense db migrate`"


@pytest.mark.parametrize("url", [
    "postgresql://reader:s3cret@127.0.0.1:1/citysense",  # nothing listens
    "postgresql://no_such_role:s3cret@{server}/postgres",  # the server refuses the role
], ids=["closed-port", "unknown-role"])
def test_api_on_an_unreachable_database_fails_in_one_line_within_5_s(pg_server: LocalPostgres, url: str) -> None:
    url = url.format(server=urlsplit(pg_server.admin_url).netloc.rpartition("@")[2])
    started = time.monotonic()
    proc = run_cli("api", "--port", str(free_port()), database_url=url, timeout=30)
    elapsed = time.monotonic() - started
    line = _one_error_line(proc)
    assert elapsed < 5, elapsed
    assert "cannot reach the database at " in line and "CITYSENSE_DATABASE_URL" in line
    assert ":***@" in line and "s3cret" not in proc.stdout + proc.stderr


def test_a_taken_api_port_is_one_line_naming_the_port_and_its_variable(database_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = _one_error_line(run_cli("api", database_url=database_url, api_port=str(port)))
    assert f"port {port} on 127.0.0.1 is taken" in line and "CITYSENSE_API_PORT" in line


def test_an_unknown_default_aqi_scale_is_one_line_at_api_start(database_url: str) -> None:
    line = _one_error_line(run_cli("api", "--port", str(free_port()), database_url=database_url,
                                aqi_default_scale="eu_2030"))
    assert "CITYSENSE_AQI_DEFAULT_SCALE" in line and "tw_moenv_2025" in line


@pytest.mark.parametrize(("command", "literal"), [
    (["device", "register", "--help"], "[a-z0-9-]{3,64}"),
    (["firmware", "run", "--help"], "[a-z0-9-]{3,64}"),
    (["firmware", "run", "--help"], "mqtt://[user:token@]host:port"),
])
def test_patterns_are_shown_literally_in_help(command: list[str], literal: str) -> None:
    proc = run_cli(*command)
    assert proc.returncode == 0 and literal in proc.stdout, proc.stdout


def test_patterns_are_shown_literally_in_errors() -> None:
    line = _one_error_line(run_cli("device", "register", "Bad[a-z]{9}", database_url="postgresql://x@127.0.0.1:1/x"))
    assert line == "error: device id 'Bad[a-z]{9}' must match [a-z0-9-]{3,64}", line


def test_device_config_with_the_broker_down_names_the_broker() -> None:
    line = _one_error_line(run_cli("device", "config", "box-01", "interval_s=120",
                                mqtt_url=f"mqtt://operator:s3cret@127.0.0.1:{free_port()}"))
    assert "cannot reach the broker at mqtt://operator:***@127.0.0.1:" in line and "CITYSENSE_MQTT_URL" in line
    assert "s3cret" not in line

