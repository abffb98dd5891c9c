"""deploy/postgres/roles.sql: the owner migrates, the writer ingests, the reader only reads.

Against a real PostgreSQL: a fresh empty database, the roles made by the file, the schema
migrated as the owner, a real gateway (Mosquitto) writing as the writer, and the API reading
as the reader while it registers through the writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.app import create_app
from contracts.settings import Settings
from devtools.local_broker import LocalMosquitto
from devtools.local_postgres import LocalPostgres
from ingest.backend import Backend
from ingest.calibration_store import insert_calibration, recalibrate
from ingest.migrate import migrate
from tests.conftest import REPO, count, wait_until

ROLES_SQL = REPO / "deploy" / "postgres" / "roles.sql"
ADMIN = {"Authorization": "Bearer roles-admin"}


def apply_roles(superuser_url: str, **passwords: str) -> None:
    """Run roles.sql as the deploy does: passwords as citysense.<role>_password session settings."""
    options = " ".join(f"-c citysense.{who}_password={secret}" for who, secret in passwords.items())
    with psycopg.connect(superuser_url, autocommit=True, options=options) as conn:
        conn.execute(ROLES_SQL.read_bytes())


def role_url(server: LocalPostgres, role: str, database: str) -> str:
    return f"postgresql://citysense_{role}@127.0.0.1:{server.port}/{database}"


@pytest.fixture
def empty_database(pg_server: LocalPostgres) -> Iterator[str]:
    """A database with no schema (not the migrated template): the owner must make it."""
    name = f"roles_{os.getpid()}_{time.monotonic_ns()}"
    pg_server.create_database(name)
    yield name
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def _publish(broker: LocalMosquitto, device_id: str, pm25: float, ts: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{device_id}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    doc = {"v": 1, "id": device_id, "seq": 1, "ts": ts, "m": {"pm25": pm25, "rh": 60.0}}
    client.publish(f"citysense/v1/airbox/{device_id}/up", orjson.dumps(doc), qos=1).wait_for_publish()
    client.loop_stop()
    client.disconnect()


def test_owner_migrates_writer_ingests_and_registers_reader_only_reads(
    pg_server: LocalPostgres, empty_database: str, mosquitto: LocalMosquitto, start_gateway: Any, backend: Backend
) -> None:
    superuser_url = pg_server.url(empty_database)
    apply_roles(superuser_url, owner="owner-pw", writer="writer-pw", reader="reader-pw")
    migrate(role_url(pg_server, "owner", empty_database))
    apply_roles(superuser_url)  # after the migration: grants on the tables it made; passwords kept
    writer_url = role_url(pg_server, "writer", empty_database)
    reader_url = role_url(pg_server, "reader", empty_database)
    assert count(superuser_url, "SELECT count(*) FROM pg_authid WHERE rolname = ANY(%s) "
                 "AND rolpassword IS NOT NULL AND NOT rolsuper",
                 ["citysense_owner", "citysense_writer", "citysense_reader"]) == 3
    assert count(superuser_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                 "AND tableowner <> 'citysense_owner'") == 0

    start_gateway(mosquitto.url, writer_url).wait_subscribed()
    ts = int(time.time()) - 120
    _publish(mosquitto, "roles-box-1", 21.0, ts)
    wait_until(lambda: count(reader_url, "SELECT count(*) FROM readings WHERE device_id = 'roles-box-1'") == 2, 30,
               what="the gateway's readings, written as the writer")

    settings = Settings(database_url=writer_url, database_read_url=reader_url, admin_token="roles-admin")
    with TestClient(create_app(settings)) as http:
        assert http.get("/v1/health").json()["status"] == "ok"
        assert count(superuser_url, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'citysense_reader' "
                     "AND application_name = 'citysense-api'") >= 1, "the API's reads connect as the reader"
        rows = http.get("/v1/readings", params={"device_id": "roles-box-1", "metric": "pm25"}).json()["results"]
        assert [r["raw"] for r in rows] == [21.0]
        assert http.get("/v1/devices/roles-box-1").status_code == 200
        assert http.get("/v1/series", params={"device_id": "roles-box-1", "metric": "pm25"}).status_code == 200
        registered = http.post("/v1/devices", json={"device_id": "roles-box-2", "school": "Jianguo"}, headers=ADMIN)
        assert registered.status_code == 201, registered.text
        assert http.post("/v1/devices/roles-box-2/retire", headers=ADMIN).status_code == 200

    with psycopg.connect(reader_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="readings"):
            conn.execute("INSERT INTO readings (time, device_id, metric, raw) VALUES (now(), 'roles-box-1', 'pm25', 1)")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="devices"):
            conn.execute("SELECT token_hash FROM devices")
    with psycopg.connect(writer_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="readings"):
            conn.execute("DELETE FROM readings")  # retention is the owner's (db maintain)
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owner"):
            conn.execute("DROP TABLE readings")
        conn.rollback()
        # the calibration store writes as the writer; on plain PostgreSQL its aggregate refresh too
        # (TimescaleDB refreshes continuous aggregates as their owner: deploy/README.md)
        insert_calibration(conn, metric="pm25", model={"type": "linear", "a": 0.5, "b": 1.0},
                           device_id="roles-box-1", valid_from=datetime.fromtimestamp(ts, UTC) - timedelta(hours=1))
        conn.commit()
        if backend == "postgresql":
            report = recalibrate(conn, "roles-box-1", datetime.fromtimestamp(ts, UTC) - timedelta(hours=1))
            assert report.rows_changed == 1 and report.aggregates_backend == "postgresql"
