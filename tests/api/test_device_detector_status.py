"""/v1/devices shows what a parking sensor's detector says of itself (baseline age, confidence, needs
re-learning), from the status the gateway's own decoder and writer stored; an air box shows nulls."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from tests.conftest import write_status


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind, registered) VALUES ('bay-0042', 'parking', true),"
            " ('box-0001', 'airbox', true)"
        )
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def test_devices_show_a_parking_sensor_s_baseline_age_confidence_and_relearning(
    database_url: str, http: TestClient
) -> None:
    write_status(database_url, "parking", "bay-0042", {"online": True, "base_age_s": 120, "conf": 0.93,
                                                        "relearn": True})
    write_status(database_url, "airbox", "box-0001", {"online": True, "fw": "1.4.2"})
    rows = {r["device_id"]: r for r in http.get("/v1/devices").json()["results"]}
    bay, box = rows["bay-0042"], rows["box-0001"]
    assert (bay["baseline_age_s"], bay["detector_confidence"], bay["needs_relearning"]) == (120, 0.93, True)
    assert (box["baseline_age_s"], box["detector_confidence"], box["needs_relearning"]) == (None, None, None)
    one = http.get("/v1/devices/bay-0042").json()
    assert one["needs_relearning"] is True and one["baseline_age_s"] == 120

    write_status(database_url, "parking", "bay-0042", {"online": True, "base_age_s": 0, "conf": 1, "relearn": False})
    bay = http.get("/v1/devices/bay-0042").json()
    assert (bay["baseline_age_s"], bay["detector_confidence"], bay["needs_relearning"]) == (0, 1.0, False)
    write_status(database_url, "parking", "bay-0042", {"online": False})  # its last will
    bay = http.get("/v1/devices/bay-0042").json()
    assert bay["online"] is False and bay["needs_relearning"] is None


def test_a_stored_status_with_values_out_of_range_gives_nulls_not_a_failed_write(
    database_url: str, http: TestClient
) -> None:
    """A row written before the decoder checked these fields (or by hand) must not break the table."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO device_status (device_id, online, status) VALUES"
            " ('bay-0042', true, '{\"online\": true, \"base_age_s\": 1e300, \"conf\": \"high\", \"relearn\": 1}')"
        )
    bay = http.get("/v1/devices/bay-0042").json()
    assert (bay["baseline_age_s"], bay["detector_confidence"], bay["needs_relearning"]) == (None, None, None)
