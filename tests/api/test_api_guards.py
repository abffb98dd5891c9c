"""The guards of the open API: per-client rate limit, bounded exports, CORS for open data only, bounded map cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.exports import ExportSlots
from api.rate_limit import ClientRateLimiter
from api.response_cache import TtlCache
from contracts.settings import Settings
from tests.api.seed import seed_city


def test_rate_limiter_allows_a_burst_then_the_rate_and_forgets_old_clients() -> None:
    limiter = ClientRateLimiter(rate_per_s=2, burst=3, max_clients=2)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5)
    assert limiter.take("a", now=0.5) == 0.0  # one token came back in 0.5 s at 2/s
    limiter.take("b", now=1.0)
    limiter.take("c", now=1.0)
    assert len(limiter) == 2  # "a", the least recently seen, went


@pytest.fixture
def seeded(database_url: str) -> str:
    seed_city(database_url)
    return database_url


def test_a_client_beyond_its_rate_gets_429_with_retry_after(seeded: str) -> None:
    settings = Settings(database_url=seeded, api_rate_limit_per_s=1, api_rate_limit_burst=5)
    with TestClient(create_app(settings)) as http:
        codes = [http.get("/v1/flags").status_code for _ in range(7)]
        refused = http.get("/v1/devices")
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "requests per second" in refused.json()["detail"]


def test_exports_beyond_the_bound_get_429_and_slots_come_back() -> None:
    slots = ExportSlots(2)
    first, second = slots.claim(), slots.claim()
    with pytest.raises(Exception, match="429") as refused:
        slots.claim()
    assert refused.value.headers == {"Retry-After": "30"}  # type: ignore[attr-defined]
    first.release()
    first.release()  # a second release gives back nothing more
    assert slots.in_use == 1
    slots.claim()
    second.release()
    assert slots.in_use == 1


@pytest.fixture
def http(seeded: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=seeded, admin_token="s3cret"))) as client:
        yield client


def test_open_data_may_be_read_from_any_origin(http: TestClient) -> None:
    r = http.get("/v1/latest", headers={"Origin": "https://class.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    ask = {"Origin": "https://class.example", "Access-Control-Request-Method": "GET"}
    pre = http.options("/v1/devices", headers=ask)
    assert pre.status_code == 200 and "GET" in pre.headers["access-control-allow-methods"]


def test_admin_routes_never_get_cors_headers(http: TestClient) -> None:
    origin = {"Origin": "https://evil.example"}
    listed = http.get("/v1/rejected", headers={**origin, "Authorization": "Bearer s3cret"})
    assert listed.status_code == 200 and "access-control-allow-origin" not in listed.headers
    posted = http.post("/v1/devices", json={"device_id": "cors-box-1"}, headers={**origin, "Authorization": "x"})
    assert "access-control-allow-origin" not in posted.headers
    pre = http.options("/v1/devices", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert pre.status_code >= 400 and "access-control-allow-origin" not in pre.headers


def test_cors_is_off_when_no_origin_is_configured(seeded: str) -> None:
    with TestClient(create_app(Settings(database_url=seeded, api_cors_origins=""))) as http:
        assert "access-control-allow-origin" not in http.get("/v1/flags", headers={"Origin": "https://a.example"}).headers


def test_varying_max_age_neither_grows_the_map_cache_nor_reaches_the_database(seeded: str) -> None:
    with TestClient(create_app(Settings(database_url=seeded, api_latest_cache_s=60, api_rate_limit_per_s=0))) as http:
        app = http.app
        bodies = [http.get("/v1/latest", params={"max_age_s": 3600 + i}) for i in range(300)]
        assert all(b.status_code == 200 for b in bodies)
        assert {f["id"] for f in bodies[-1].json()["features"]} == {"box-a", "box-b"}
        rows_cache = app.state.latest_rows  # type: ignore[attr-defined]
        body_cache = app.state.latest_cache  # type: ignore[attr-defined]
        assert len(rows_cache) == 1  # one query for the metric, whatever max_age_s was asked
        assert len(body_cache) == body_cache.max_entries == 256
        assert rows_cache.computing == 0 and body_cache.computing == 0


def test_the_cache_runs_one_computation_per_key_and_forgets_it() -> None:
    calls = 0

    async def slow() -> tuple[int, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls, time.monotonic()

    async def scenario() -> tuple[list[int], int]:
        cache = TtlCache[int](ttl_s=60, max_entries=2)
        values = [v for v, _ in await asyncio.gather(*(cache.get_or_compute("k", slow) for _ in range(20)))]
        for key in ("a", "b", "c"):
            await cache.get_or_compute(key, slow)
        return values, cache.computing + len(cache)

    values, held = asyncio.run(scenario())
    assert values == [1] * 20 and calls == 4 and held == 2
