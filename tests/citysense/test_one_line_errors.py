"""What a newcomer meets first fails in one line that says what to change, never a traceback or a 500."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from devtools.local_postgres import LocalPostgres
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
