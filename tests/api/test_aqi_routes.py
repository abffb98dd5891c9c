"""The AQI router serves the tables and computes indices without a database."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes.aqi import router


def client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_tables_are_served() -> None:
    body = client().get("/v1/aqi/scales").json()
    assert {s["key"] for s in body} == {"us_epa_2024", "tw_moenv_2025"}
    tw = client().get("/v1/aqi/scales/tw_moenv_2025").json()
    assert tw["breakpoints"][1] == {"c_low": 12.5, "c_high": 30.4, "aqi_low": 51, "aqi_high": 100}
    assert tw["categories"][0]["name_local"] == "良好"
    assert client().get("/v1/aqi/scales/nope").status_code == 404


def test_compute() -> None:
    body = client().get("/v1/aqi/compute", params={"pm25": 35.4, "scale": "us_epa_2024"}).json()
    assert body["aqi"] == 100 and body["category"]["key"] == "moderate" and body["category"]["color"] == "#FFFF00"
    tw = client().get("/v1/aqi/compute", params={"pm25": 30.5, "scale": "tw_moenv_2025"}).json()
    assert tw["aqi"] == 101
    assert client().get("/v1/aqi/compute", params={"pm25": -1}).status_code == 422
    assert client().get("/v1/aqi/compute", params={"pm25": 5, "scale": "eu"}).status_code == 404


def test_realtime() -> None:
    ok = client().get("/v1/aqi/realtime", params={"hourly": [20, 20, 20, 20], "scale": "us_epa_2024"})
    assert ok.status_code == 200 and ok.json()["concentration_used"] == 20.0
    short = client().get("/v1/aqi/realtime", params={"hourly": [20, 20, 20], "scale": "tw_moenv_2025"})
    assert short.status_code == 422 and "6 valid of 12" in short.json()["detail"]
    gaps = client().get("/v1/aqi/realtime", params={"hourly": ["nan", "nan", 20], "scale": "us_epa_2024"})
    assert gaps.status_code == 422
