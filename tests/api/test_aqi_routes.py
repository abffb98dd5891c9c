"""The AQI router serves the tables and computes indices without a database."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from calibration.aqi import SCALES
from contracts.settings import Settings
from tests.conftest import REPO


def client(settings: Settings | None = None) -> TestClient:
    """The whole application (its 422 sentences, its default scale) without its lifespan: no database needed."""
    return TestClient(create_app(settings or Settings()))


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


def test_unknown_scale_is_a_422_listing_the_known_keys() -> None:
    r = client().get("/v1/aqi/compute", params={"pm25": 5, "scale": "eu"})
    assert r.status_code == 422
    assert "query parameter 'scale'" in r.json()["detail"] and "tw_moenv_2025" in r.json()["detail"]


def test_the_default_scale_is_tw_moenv_2025_unless_the_setting_names_another() -> None:
    assert client().get("/v1/aqi/compute", params={"pm25": 30.5}).json()["scale"] == "tw_moenv_2025"
    us = client(Settings(aqi_default_scale="us_epa_2024")).get("/v1/aqi/compute", params={"pm25": 30.5}).json()
    assert us["scale"] == "us_epa_2024" and us["aqi"] == 91
    realtime = client(Settings(aqi_default_scale="us_epa_2024")).get("/v1/aqi/realtime", params={"hourly": "20,20"})
    assert realtime.json()["scale"] == "us_epa_2024"


def test_an_unknown_default_scale_setting_refuses_to_start_naming_the_known_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown AQI scale 'eu'.*tw_moenv_2025"):
        create_app(Settings(aqi_default_scale="eu"))


def test_realtime() -> None:
    ok = client().get("/v1/aqi/realtime", params={"hourly": [20, 20, 20, 20], "scale": "us_epa_2024"})
    assert ok.status_code == 200 and ok.json()["concentration_used"] == 20.0
    short = client().get("/v1/aqi/realtime", params={"hourly": [20, 20, 20], "scale": "tw_moenv_2025"})
    assert short.status_code == 422 and "6 valid of 12" in short.json()["detail"]
    gaps = client().get("/v1/aqi/realtime", params={"hourly": ["nan", "nan", 20], "scale": "us_epa_2024"})
    assert gaps.status_code == 422


def test_realtime_takes_comma_separated_hours_as_repeated_ones() -> None:
    commas = client().get("/v1/aqi/realtime", params={"hourly": "20,22,25", "scale": "us_epa_2024"})
    repeated = client().get("/v1/aqi/realtime", params={"hourly": [20, 22, 25], "scale": "us_epa_2024"})
    assert commas.status_code == 200 and commas.json() == repeated.json()
    mixed = client().get("/v1/aqi/realtime", params={"hourly": ["20, nan", "25"], "scale": "us_epa_2024"})
    assert mixed.status_code == 200


def test_a_bad_hour_is_named_by_the_hourly_parameter_and_its_position() -> None:
    r = client().get("/v1/aqi/realtime", params={"hourly": "20,abc,25"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("query parameter 'hourly', item 2:"), detail
    assert "'0'" not in detail and "'1'" not in detail


def test_scale_keys_are_an_openapi_enum_built_from_the_registry() -> None:
    spec = client().get("/openapi.json").json()
    for path in ("/v1/aqi/compute", "/v1/aqi/realtime", "/v1/devices/{device_id}/aqi"):
        (scale,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "scale"]
        assert scale["schema"]["type"] == "string" and scale["schema"]["enum"] == list(SCALES), path


@pytest.mark.parametrize("doc", ["README.md", "docs/calibration.md", "docs/bureaus.md"])
def test_every_scale_key_is_listed_in_the_docs(doc: str) -> None:
    text = (Path(REPO) / doc).read_text()
    assert all(f"`{key}`" in text for key in SCALES), doc
