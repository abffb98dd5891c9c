"""What the map and school pages read: the server's AQI per box, a school's summary, bays, the exports,
the page shells; and that the pages themselves compute no AQI."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerts.school_air import SchoolFlag
from alerts.store import save_school_flag
from api.app import create_app
from api.aqi_display import AA_NORMAL_TEXT, contrast_ratio, text_color_on
from calibration.aqi import SCALES
from contracts.settings import Settings
from tests.api.map_fleet import Fleet, make_fleet, seed_fleet
from tests.conftest import REPO


@pytest.fixture
def city(database_url: str) -> Iterator[tuple[TestClient, Fleet]]:
    fleet = make_fleet(9, n_spots=4)
    seed_fleet(database_url, fleet)
    with TestClient(create_app(Settings(database_url=database_url, api_latest_cache_s=0))) as client:
        yield client, fleet


def test_every_category_colour_gets_a_text_colour_with_aa_contrast() -> None:
    for scale in SCALES.values():
        for category in scale.categories:
            ratio = contrast_ratio(category.color, text_color_on(category.color))
            assert ratio >= AA_NORMAL_TEXT, (scale.key, category.key, ratio)


# what any AQI computation needs: the breakpoint table, or a server route that computes from a concentration
AQI_ARITHMETIC = re.compile(r"breakpoints|c_low|c_high|nowcast|aqi/compute|aqi/realtime|concentration", re.I)


def test_the_pages_compute_no_aqi_in_the_browser() -> None:
    """The sources, the built bundles and the page shells never touch the breakpoint tables."""
    files = [*(REPO / "frontend" / "src").glob("*.js"), *(REPO / "api" / "static").glob("*.html"),
             *(REPO / "api" / "static" / "dist").glob("*.js")]
    assert any(f.parent.name == "dist" for f in files), "the pages are not built: run `make frontend`"
    for path in files:
        found = AQI_ARITHMETIC.findall(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(REPO)} mentions {sorted(set(found))}"


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_map_devices_carry_the_device_aqi_endpoints_index(city: tuple[TestClient, Fleet], scale: str) -> None:
    http, fleet = city
    body = http.get("/v1/map/devices", params={"scale": scale}).json()
    assert body["meta"]["scale"] == scale
    assert {d["device_id"] for d in body["results"]} == {b.device_id for b in fleet.boxes}
    for box in body["results"]:
        one = http.get(f"/v1/devices/{box['device_id']}/aqi", params={"scale": scale}).json()
        assert box["aqi"]["aqi"] == one["aqi"] and box["aqi"]["color"] == one["color"], (box, one)
        assert box["aqi"]["category"] == one["category"]["key"]
        assert box["fw"] == "1.4.2" and box["pm25_raw"] == pytest.approx(box["pm25"] * 1.5, abs=0.2)


def test_school_summary_is_its_worst_box_with_a_week_and_a_day_against_the_city(
    city: tuple[TestClient, Fleet],
) -> None:
    http, fleet = city
    school = fleet.school
    summary = http.get(f"/v1/schools/{school.upper()}").json()  # any case, as the export
    assert summary["school"] == school and summary["scale"] == "tw_moenv_2025"
    mine = [b.device_id for b in fleet.boxes if b.school == school]
    assert sorted(d["device_id"] for d in summary["devices"]) == mine
    worst = max((http.get(f"/v1/devices/{d}/aqi").json() for d in mine), key=lambda a: a["aqi"])
    assert summary["now"]["aqi"] == worst["aqi"] and summary["now"]["device_id"] == worst["device_id"]
    assert len(summary["week"]["time"]) >= 13 and len(summary["day"]["city"]["time"]) >= 13
    assert summary["day"]["city"]["pm25"] != summary["day"]["school"]["pm25"]


def test_school_summary_carries_the_colour_the_schools_flag_light_shows(
    city: tuple[TestClient, Fleet], database_url: str
) -> None:
    """`now` is the highest box; `flag` is what the alert evaluator set for the light at the gate
    (the median, held against flapping): the same row GET /v1/schools/{school}/flag answers."""
    http, fleet = city
    assert http.get(f"/v1/schools/{fleet.school}").json()["flag"] is None  # no evaluation yet

    async def save() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            flag = SchoolFlag(fleet.school, 2, "yellow", "#ffff00", 64, "tw_moenv_2025", "moderate")
            await save_school_flag(conn, flag, datetime(2026, 12, 1, 8, tzinfo=UTC), changed=True)

    asyncio.run(save())
    summary = http.get(f"/v1/schools/{fleet.school.lower()}").json()
    assert summary["flag"] == http.get(f"/v1/schools/{fleet.school}/flag").json()
    assert summary["flag"]["colour"] == "yellow" and summary["flag"]["aqi"] == 64


def test_school_summary_of_an_unknown_school_is_a_404(city: tuple[TestClient, Fleet]) -> None:
    http, _ = city
    answer = http.get("/v1/schools/No Such School")
    assert answer.status_code == 404 and "No Such School" in answer.json()["detail"]


def test_bays_are_free_occupied_or_unknown_by_their_newest_event(city: tuple[TestClient, Fleet]) -> None:
    http, fleet = city
    bays = {b["device_id"]: b["status"] for b in http.get("/v1/parking/bays").json()["results"]}
    stale = fleet.spots[-1].device_id  # seeded six hours ago
    assert bays[stale] == "unknown"
    for spot in fleet.spots[:-1]:
        assert bays[spot.device_id] == ("occupied" if spot.occupied else "free")
    zone = http.get("/v1/parking/zones").json()["results"][0]  # a stale bay is unknown only, not free too
    statuses = list(bays.values())
    assert (zone["free"], zone["occupied"], zone["unknown"]) == (
        statuses.count("free"), statuses.count("occupied"), statuses.count("unknown"))
    assert zone["free"] + zone["occupied"] + zone["unknown"] == zone["bays"] == len(fleet.spots)


def test_spreadsheet_export_has_a_byte_order_mark_and_local_wall_clock_times(city: tuple[TestClient, Fleet]) -> None:
    http, fleet = city
    plain = http.get("/v1/export/school.csv", params={"school": fleet.school}).content.decode("utf-8").splitlines()
    sheet = http.get("/v1/export/school.csv", params={"school": fleet.school, "format": "spreadsheet"}).content
    assert sheet.startswith(b"\xef\xbb\xbftime_local,device_id")
    rows = sheet.decode("utf-8-sig").splitlines()
    assert len(rows) == len(plain)
    utc_time, rest = plain[1].split(",", 1)
    local = datetime.fromisoformat(utc_time).astimezone(ZoneInfo("Asia/Taipei")).strftime("%Y-%m-%d %H:%M:%S")
    assert rows[1] == f"{local},{rest}"


def test_pages_carry_the_tile_settings_and_cannot_be_closed_by_one(database_url: str) -> None:
    settings = Settings(database_url=database_url, map_tiles_attribution="</script><b>x</b>")
    with TestClient(create_app(settings)) as http:
        page = http.get("/map").text
        config = json.loads(re.search(r'type="application/json">(.*?)</script>', page, re.S)[1])  # type: ignore[index]
        assert config["tiles"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
        assert config["attribution"] == "</script><b>x</b>" and config["scale"] == "tw_moenv_2025"
        school = http.get("/schools/Da'an Elementary")
        assert school.status_code == 200 and "Da'an Elementary" in school.text
        assert http.get("/static/i18n/zh-Hant.json").json()["categories"]["good"] == "良好"
