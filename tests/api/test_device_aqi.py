"""A device's real-time AQI from its stored hourly PM2.5, on the backend the suite runs on."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.device_aqi import HOUR, DeviceAqi, last_complete_hours, realtime_aqi_of_devices
from calibration.aqi import realtime_aqi
from contracts.settings import Settings
from ingest.backend import Backend


def hourly_value(hour: datetime) -> float:
    """The PM2.5 every reading of this hour bucket holds: a function of the hour, so any window can be checked."""
    return 8.0 + (hour.hour % 7) * 4.5


def seed(url: str, hours_back: int = 16, missing: frozenset[int] = frozenset()) -> datetime:
    """box-a: 3 readings in each of the last `hours_back` hours (and the current one) but the `missing` ones
    (hours ago, 1 = the last complete hour); box-b: only the current, incomplete hour; park-1: parking."""
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, kind, registered) VALUES ('box-a', 'airbox', true), "
            "('box-b', 'airbox', true), ('park-1', 'parking', true), ('box-old', 'airbox', true)"
        )
        conn.execute("UPDATE devices SET retired_at = now() WHERE device_id = 'box-old'")
        rows = []
        for ago in range(hours_back + 1):
            hour = current - HOUR * ago
            if ago in missing:
                continue
            for minute in (5, 25, 45):
                value = hourly_value(hour)
                rows.append((hour + timedelta(minutes=minute), "box-a", "pm25", value * 1.5, value, 0))
                rows.append((hour + timedelta(minutes=minute), "box-a", "rh", 60.0, 60.0, 0))
        rows.append((current + timedelta(seconds=1), "box-b", "pm25", 50.0, 50.0, 0))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, device_id, metric, raw, value, flags) VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
    return current


def aqi_of(url: str, backend: str, scale: str, ids: list[str] | None, now: datetime) -> dict[str, DeviceAqi]:
    async def run() -> dict[str, DeviceAqi]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            return await realtime_aqi_of_devices(conn, backend, scale, ids, now=now)

    return asyncio.run(run())


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client


def test_the_index_comes_from_the_12_complete_hours_before_now_most_recent_first(
    database_url: str, backend: Backend
) -> None:
    current = seed(database_url)
    now = current + timedelta(minutes=20)
    found = aqi_of(database_url, backend, "tw_moenv_2025", ["box-a"], now)
    one = found["box-a"]
    hours = [current - HOUR * i for i in range(1, 13)]
    assert [h.time for h in one.hours] == hours == list(last_complete_hours(now))
    assert [h.pm25 for h in one.hours] == pytest.approx([hourly_value(h) for h in hours])
    expected = realtime_aqi("tw_moenv_2025", [hourly_value(h) for h in hours])
    assert expected is not None and one.result == expected


def test_the_calibrated_value_is_averaged_not_the_raw_one(database_url: str, backend: Backend) -> None:
    current = seed(database_url)
    one = aqi_of(database_url, backend, "us_epa_2024", ["box-a"], current + timedelta(minutes=1))["box-a"]
    assert one.hours[0].pm25 == pytest.approx(hourly_value(current - HOUR))


def test_all_devices_in_service_are_answered_in_one_call(database_url: str, backend: Backend) -> None:
    current = seed(database_url)
    found = aqi_of(database_url, backend, "us_epa_2024", None, current + timedelta(minutes=1))
    assert set(found) == {"box-a", "box-b"}  # not the parking sensor, not the retired box
    assert found["box-a"].result is not None
    assert found["box-b"].result is None  # its only hour is not complete


def test_missing_hours_are_listed_empty_and_too_many_give_no_index(database_url: str, backend: Backend) -> None:
    current = seed(database_url, missing=frozenset({1, 2, 3, 5, 6, 7, 8}))
    one = aqi_of(database_url, backend, "tw_moenv_2025", ["box-a"], current + timedelta(minutes=1))["box-a"]
    assert [h.pm25 is None for h in one.hours][:8] == [True, True, True, False, True, True, True, True]
    assert one.result is None  # 1 valid hour of the last 4: MOENV needs 2
    assert one.insufficient_reason is not None and "not enough hourly PM2.5" in one.insufficient_reason


def test_device_aqi_route_gives_index_category_colour_and_hours(http: TestClient, database_url: str) -> None:
    seed(database_url)
    r = http.get("/v1/devices/box-a/aqi")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scale"] == "tw_moenv_2025" and body["reason"] is None
    values = [h["pm25"] for h in body["hours"]]
    expected = realtime_aqi("tw_moenv_2025", values)
    assert expected is not None and body["aqi"] == expected.aqi
    assert body["category"]["key"] == expected.category.key and body["color"] == expected.category.color
    assert body["concentration"] == pytest.approx(expected.concentration) and body["hours_used"] == 12
    hours = [datetime.fromisoformat(h["time"]) for h in body["hours"]]
    assert values == pytest.approx([hourly_value(h) for h in hours])
    assert all(a - b == HOUR for a, b in itertools.pairwise(hours))
    us = http.get("/v1/devices/box-a/aqi", params={"scale": "us_epa_2024"}).json()
    assert us["scale"] == "us_epa_2024" and "NowCast" in us["rule"]


def test_device_aqi_of_an_unknown_device_is_404(http: TestClient, database_url: str) -> None:
    seed(database_url)
    r = http.get("/v1/devices/nobody-here/aqi")
    assert r.status_code == 404 and "nobody-here" in r.json()["detail"]


def test_device_aqi_with_too_few_hours_answers_why_not_500(http: TestClient, database_url: str) -> None:
    seed(database_url)
    r = http.get("/v1/devices/box-b/aqi")
    assert r.status_code == 200
    body = r.json()
    assert body["aqi"] is None and body["category"] is None and body["hours_used"] == 0
    assert "not enough hourly PM2.5 for the tw_moenv_2025 real-time rule" in body["reason"]
