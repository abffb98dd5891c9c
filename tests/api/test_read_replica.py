"""CITYSENSE_DATABASE_READ_URL: the API reads from a streaming standby, writes to the primary.

Real PostgreSQL streaming replication on loopback (tests/conftest.py pg_primary_and_standby:
a primary plus a `pg_basebackup -R` hot standby), a real Mosquitto and gateway writing to the
primary, and the API with its reads on the standby.
"""

from __future__ import annotations

import time
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
from ingest.migrate import migrate
from tests.conftest import count, wait_until

ADMIN = {"Authorization": "Bearer replica-admin"}


def _publish(broker: LocalMosquitto, device_id: str, pm25: float) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{device_id}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    doc = {"v": 1, "id": device_id, "seq": 1, "ts": int(time.time()) - 30, "m": {"pm25": pm25}}
    client.publish(f"citysense/v1/airbox/{device_id}/up", orjson.dumps(doc), qos=1).wait_for_publish()
    client.loop_stop()
    client.disconnect()


def _api_sessions(server: LocalPostgres, application_name: str) -> int:
    return count(server.url("postgres"), "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                 application_name)


def _readable(url: str) -> bool:
    try:
        return count(url, "SELECT count(*) FROM schema_migrations") > 0
    except psycopg.Error:
        return False


def test_the_api_serves_from_the_standby_what_the_gateway_wrote_to_the_primary(
    pg_primary_and_standby: tuple[LocalPostgres, LocalPostgres], mosquitto: LocalMosquitto, start_gateway: Any
) -> None:
    primary, standby = pg_primary_and_standby
    primary_url = primary.create_database("citysense")
    migrate(primary_url)
    standby_url = standby.url("citysense")
    wait_until(lambda: _readable(standby_url), 30, what="the migrated schema on the standby")
    with psycopg.connect(standby_url) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    start_gateway(mosquitto.url, primary_url).wait_subscribed()
    settings = Settings(database_url=primary_url, database_read_url=standby_url, admin_token="replica-admin")
    with TestClient(create_app(settings)) as http:
        _publish(mosquitto, "replica-box-1", 17.5)

        def served() -> bool:
            rows = http.get("/v1/readings", params={"device_id": "replica-box-1", "metric": "pm25"}).json()
            return [r["raw"] for r in rows["results"]] == [17.5]

        wait_until(served, 30, what="the reading served from the standby")
        # the reads came from the standby: its sessions are the API's read pool, the primary has none of them
        assert _api_sessions(standby, "citysense-api") >= 1
        assert _api_sessions(primary, "citysense-api") == 0

        registered = http.post("/v1/devices", json={"device_id": "replica-box-2", "school": "Jianguo"},
                               headers=ADMIN)
        assert registered.status_code == 201, registered.text  # the standby refuses writes: this went to the primary
        assert count(primary_url, "SELECT count(*) FROM devices WHERE device_id = 'replica-box-2' AND registered") == 1
        wait_until(lambda: http.get("/v1/devices/replica-box-2").status_code == 200, 10,
                   what="the registration replayed on the standby")

        started = time.monotonic()
        health = http.get("/v1/health")
        took = time.monotonic() - started
    assert health.status_code == 200, health.text
    replica = health.json()["replica"]
    assert replica["read_url_in_use"] is True and replica["in_recovery"] is True
    assert replica["lag_s"] is not None and 0 <= replica["lag_s"] < 5
    assert replica["last_replay_age_s"] is not None
    assert took < 1.0
    print(f"standby health: {replica}, answered in {took * 1000:.0f} ms")


def test_health_on_the_primary_says_no_replica_is_in_use(database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url))) as http:
        body = http.get("/v1/health").json()
    assert body["replica"] == {"read_url_in_use": False, "in_recovery": False, "lag_s": None,
                               "last_replay_age_s": None}


def test_a_standby_read_url_must_be_a_postgresql_url() -> None:
    with pytest.raises(ValueError, match="CITYSENSE_DATABASE_READ_URL"):
        Settings(database_read_url="mysql://replica/citysense")
    assert Settings(database_url="postgresql://a@p/c").api_read_url == "postgresql://a@p/c"
    assert Settings(database_url="postgresql://a@p/c", database_read_url="postgresql://r@s/c").api_read_url \
        == "postgresql://r@s/c"
