"""`/v1/admin/calibration/...`: the CLI's fit and drift jobs over HTTP, behind the admin token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from calibration.drift import TUNABLES
from contracts.settings import Settings
from tests.citysense.test_calibrate_cli import seed_colocation

ADMIN = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url, admin_token="s3cret"))) as client:
        yield client


def fit_body(reference: Path, **extra: object) -> dict[str, object]:
    return {"device_id": "box-1", "reference": reference.read_text(encoding="utf-8"), "tz": "Asia/Taipei",
            "from": "2025-03-01T00:00:00Z", "to": "2025-03-11T00:00:00Z", "robust": True, **extra}


def test_fit_stores_the_model_and_answers_the_clis_json(http: TestClient, database_url: str, tmp_path: Path) -> None:
    reference = seed_colocation(database_url, tmp_path)
    answer = http.post("/v1/admin/calibration/fit", json=fit_body(reference), headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stored"] and body["method"] == "bisquare_irls:linear"
    assert body["model"]["a"] == pytest.approx(0.625, rel=0.02)
    assert set(body) >= {"all", "kept", "downweighted", "calibration_id", "valid_from"}
    dry = http.post("/v1/admin/calibration/fit", json=fit_body(reference, save=False), headers=ADMIN).json()
    assert dry["stored"] is False and dry["calibration_id"] is None


def test_fit_refusals_are_422_with_the_reason(http: TestClient, database_url: str, tmp_path: Path) -> None:
    reference = seed_colocation(database_url, tmp_path)
    short = http.post("/v1/admin/calibration/fit", headers=ADMIN,
                      json=fit_body(reference, to="2025-03-01T12:00:00Z"))
    assert short.status_code == 422 and "only 12 paired hours" in short.json()["detail"]
    unknown = http.post("/v1/admin/calibration/fit", headers=ADMIN, json=fit_body(reference, device_id="nope-1"))
    assert unknown.status_code == 404
    not_a_reference = {**fit_body(reference), "reference": "x,y\n1,2\n"}
    broken = http.post("/v1/admin/calibration/fit", headers=ADMIN, json=not_a_reference)
    assert broken.status_code == 422 and broken.json()["detail"].startswith("reference:")


def test_drift_lists_every_located_box(http: TestClient, database_url: str, tmp_path: Path) -> None:
    seed_colocation(database_url, tmp_path)
    answer = http.get("/v1/admin/calibration/drift", headers=ADMIN,
                      params={"since": "2025-03-01T00:00:00Z", "until": "2025-03-11T00:00:00Z"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["device_id"] for r in body["results"]] == ["box-1"]
    assert body["results"][0]["status"] == "insufficient_data"  # alone: nobody to compare it with
    assert body["meta"]["needs_attention"] == ["box-1"]
    assert body["meta"]["insufficient_data"] == ["box-1"] and body["meta"]["drifting"] == []


def test_drift_takes_the_clis_settings_and_refuses_one_that_cannot_work(http: TestClient) -> None:
    window = {"since": "2025-03-01T00:00:00Z", "until": "2025-03-11T00:00:00Z"}
    tuned = http.get("/v1/admin/calibration/drift", headers=ADMIN,
                     params={**window, "step_hours": 12, "step_threshold": 10, "min_drift": 0.05})
    assert tuned.status_code == 200, tuned.text
    refused = http.get("/v1/admin/calibration/drift", headers=ADMIN, params={**window, "step_hours": 1})
    assert refused.status_code == 422 and "step_hours" in refused.text
    trend = http.get("/v1/admin/calibration/drift", headers=ADMIN, params={**window, "trend_threshold": 6})
    assert trend.status_code == 200, trend.text
    parameters = http.get("/openapi.json").json()["paths"]["/v1/admin/calibration/drift"]["get"]["parameters"]
    defaults = {p["name"]: p["schema"].get("default") for p in parameters}
    assert all(defaults[t.name] == t.kind(t.default) for t in TUNABLES), defaults


def test_without_the_token_nothing_runs(http: TestClient) -> None:
    assert http.get("/v1/admin/calibration/drift").status_code == 401
    assert http.post("/v1/admin/calibration/fit", json={}).status_code in (401, 422)
