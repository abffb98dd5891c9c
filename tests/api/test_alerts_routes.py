"""GET /v1/alerts, POST /v1/alerts/{id}/ack and GET /v1/schools/{school}/flag on alerts the evaluator wrote."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.evaluator import Evaluator
from alerts.rules import parse_rules
from api.app import create_app
from contracts.settings import Settings
from tests.alerts.receivers import add_devices, add_readings


def evaluate(url: str) -> None:
    async def once() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            await Evaluator(parse_rules({"version": "api-test"})).run_cycle(conn)
        finally:
            await conn.close()

    asyncio.run(once())


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    add_devices(database_url, [("box-1", "School A", 25.03, 121.55), ("box-2", "School B", 25.03, 121.56)])
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now = row[0]
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = [
        (hour - timedelta(hours=h) + timedelta(minutes=m), "box-1", "pm25", 60.0, 0)
        for h in range(12)
        for m in (0, 30)
        if hour - timedelta(hours=h) + timedelta(minutes=m) <= now
    ]
    rows += [(now - timedelta(minutes=20 + j), "box-2", "pm25", 10.0, 0) for j in range(5)]  # silent 20 min
    add_readings(database_url, rows)
    evaluate(database_url)
    with TestClient(create_app(Settings(database_url=database_url, admin_token="s3cret"))) as client:
        yield client


def test_alerts_are_listed_and_filtered(http: TestClient) -> None:
    body = http.get("/v1/alerts").json()
    rules = {a["rule"]: a for a in body["results"]}
    assert {"school_air", "device_silent"} <= set(rules)
    assert rules["school_air"]["evidence"]["band"] == "unhealthy" and rules["school_air"]["school"] == "School A"
    assert rules["device_silent"]["device_id"] == "box-2" and rules["device_silent"]["state"] == "open"
    assert [a["rule"] for a in http.get("/v1/alerts", params={"school": "School A"}).json()["results"]] == [
        "school_air"
    ]
    assert http.get("/v1/alerts", params={"device": "box-2", "state": "open"}).json()["meta"]["found"] == 1
    assert http.get("/v1/alerts", params={"state": "resolved"}).json()["meta"]["found"] == 0
    assert http.get("/v1/alerts", params={"to": "2020-01-01T00:00:00Z"}).json()["meta"]["found"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"state": "closed"},
        {"rule": "bogus"},
        {"device": "bad id!"},
        {"from": "yesterday"},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"limit": "0"},
        {"school": "a\x00b"},
    ],
)
def test_bad_filters_are_422_with_a_reason(http: TestClient, params: dict[str, str]) -> None:
    answer = http.get("/v1/alerts", params=params)
    assert answer.status_code == 422 and answer.json()["detail"]


def test_ack_needs_the_admin_token_and_records_who(http: TestClient) -> None:
    alert = http.get("/v1/alerts", params={"rule": "device_silent"}).json()["results"][0]
    url = f"/v1/alerts/{alert['id']}/ack"
    assert http.post(url, json={"by": "Lin"}).status_code == 401
    assert http.post(url, json={"by": ""}, headers={"Authorization": "Bearer s3cret"}).status_code == 422
    done = http.post(url, json={"by": "duty officer Lin"}, headers={"Authorization": "Bearer s3cret"})
    assert done.status_code == 200
    assert done.json()["state"] == "acknowledged" and done.json()["acknowledged_by"] == "duty officer Lin"
    assert (
        http.post("/v1/alerts/999999/ack", json={"by": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code
        == 404
    )


def test_school_flag_has_colour_aqi_and_since(http: TestClient) -> None:
    flag = http.get("/v1/schools/School A/flag").json()
    assert flag["colour"] == "red" and flag["rgb"] == "#ff0000" and flag["category"] == "unhealthy"
    assert 151 <= flag["aqi"] <= 200 and flag["since"] and flag["scale"] == "tw_moenv_2025"
    assert http.get("/v1/schools/Nowhere/flag").status_code == 404
