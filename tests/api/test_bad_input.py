"""Every bad input the fuzzing of the issue found answers a 422 in the published error shape, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from tests.api.seed import seed_city

ADMIN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    seed_city(database_url)
    with TestClient(create_app(Settings(database_url=database_url, admin_token="s3cret"))) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/aqi/compute", {"pm25": "1e30"}),
        ("/v1/aqi/compute", {"pm25": "inf"}),
        ("/v1/aqi/compute", {"pm25": "nan"}),
        ("/v1/aqi/realtime", {"hourly": ["1e308", "1e308", "1e308"]}),
        ("/v1/aqi/realtime", {"hourly": ["-inf", "20", "20"]}),
        ("/v1/readings", {"device_id": "box-a", "end": "0001-01-01T00:00:00"}),
        ("/v1/readings", {"device_id": "box-a", "start": "9999-12-31T23:59:59", "format": "csv"}),
        ("/v1/series", {"device_id": "box-a", "end": "0001-01-01T00:00:00"}),
        ("/v1/export/school.csv", {"school": "Da'an Elementary", "end": "0001-01-01T00:00:00"}),
        ("/v1/stream", {"since": "0001-01-01T00:00:00+14:00"}),
        ("/v1/stream", {"since": "1700000000"}),
        ("/v1/readings", {"device_id": "box-a", "start": "-5"}),
        ("/v1/export/school.csv", {"school": "Da'an\x00Elementary"}),
        ("/v1/devices", {"school": "a\x00b"}),
        ("/v1/devices/box%00a", {}),
        ("/v1/readings", {"device_id": "box-a\x00"}),
        ("/v1/rejected", {"reason": "bad\x00"}),
    ],
)
def test_bad_parameters_answer_422_with_a_reason(http: TestClient, path: str, params: dict[str, object]) -> None:
    r = http.get(path, params=params, headers=ADMIN)
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]


def test_a_nul_byte_in_a_registered_name_is_refused(http: TestClient) -> None:
    r = http.post("/v1/devices", json={"device_id": "new-box-9", "name": "a\x00b"}, headers=ADMIN)
    assert r.status_code == 422 and "name" in r.json()["detail"]


def test_missing_hours_may_still_be_nan(http: TestClient) -> None:
    r = http.get("/v1/aqi/realtime", params={"hourly": ["nan", "20", "20", "20"], "scale": "us_epa_2024"})
    assert r.status_code == 200


def test_every_status_code_a_route_answers_is_documented(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    readings = spec["paths"]["/v1/readings"]["get"]["responses"]
    assert {"200", "422", "429", "503"} <= set(readings)
    assert readings["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert set(readings["200"]["content"]) == {"application/json", "text/csv"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # our 422 is not FastAPI's default shape
