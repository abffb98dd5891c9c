"""/map and /schools/{school} in Debian's chromium (Playwright), against a real API on a seeded PostgreSQL.

The fleet is written through the real write path (tests/api/map_fleet.py). Screenshots go to
the test's own tmp_path; timings are printed (run with -s), and judged by `citysense bench api`, not here.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from alerts.school_air import SchoolFlag
from alerts.store import save_school_flag
from api.aqi_display import contrast_ratio
from devtools.bench.map_page import CHROMIUM, CHROMIUM_ARGS
from devtools.ports import free_port
from ingest.device_store import DeviceFields, update_device
from tests.api.conftest import StartApi
from tests.api.map_fleet import make_fleet, seed_fleet, write_reading
from tests.conftest import REPO

DIST = REPO / "api" / "static" / "dist"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: `make system-deps` installs it"
    assert (DIST / "map.js").is_file(), "the pages are not built: run `make frontend`"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _png(size: int = 256) -> bytes:
    """A plain light-grey PNG tile, `size` pixels square."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xdd\xdd\xdd" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class _TileHandler(BaseHTTPRequestHandler):
    """Any path is a tile: a stand-in for the tile server of CITYSENSE_MAP_TILES, on loopback."""

    tile = _png()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.tile)))
        self.end_headers()
        self.wfile.write(self.tile)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        return


def _rgb(hex_rgb: str) -> str:
    return "rgb({}, {}, {})".format(*(int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5)))


def _hex(css_rgb: str) -> str:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_rgb)[:3])
    return f"#{r:02X}{g:02X}{b:02X}"


def _console_errors(page: Page) -> list[str]:
    """The page's script errors and console.error lines, as they come."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda res: errors.append(f"HTTP {res.status} {res.url}") if res.status >= 400 else None)
    return errors


# every element showing text: its colour, the first opaque background behind it, its size and weight
_TEXT_COLOURS = """() => {
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const opaque = c => c && c !== 'transparent' && !/rgba\\(.*, 0\\)$/.test(c);
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text || !shown(el)) continue;
    let bg = null;
    for (let p = el; p && !bg; p = p.parentElement) {
      const c = getComputedStyle(p).backgroundColor;
      if (opaque(c)) bg = c;
    }
    const style = getComputedStyle(el);
    out.push({text: text.slice(0, 40), color: style.color, background: bg || 'rgb(255, 255, 255)',
              size: parseFloat(style.fontSize), bold: parseInt(style.fontWeight, 10) >= 700});
  }
  return out;
}"""


def _low_contrast(page: Page) -> list[dict[str, Any]]:
    """Text below WCAG 2.1 AA: 4.5:1, or 3:1 for large text (24 px, or 18.7 px bold)."""
    low = []
    for item in page.evaluate(_TEXT_COLOURS):
        large = item["size"] >= 24 or (item["bold"] and item["size"] >= 18.66)
        ratio = contrast_ratio(_hex(item["color"]), _hex(item["background"]))
        if ratio < (3.0 if large else 4.5):
            low.append({**item, "ratio": round(ratio, 2)})
    return low


def _markers(page: Page) -> list[dict[str, Any]]:
    """What each marker shows: device, number, and the colours the browser actually painted."""
    found: list[dict[str, Any]] = page.eval_on_selector_all(
        ".aqi-num",
        """els => els.map(e => ({device: e.dataset.device, text: e.textContent,
              background: getComputedStyle(e).backgroundColor, color: getComputedStyle(e).color}))""",
    )
    return found


def _assert_markers_match_api(page: Page, api: str, scale: str, expected_devices: int) -> None:
    markers = _markers(page)
    assert len(markers) == expected_devices
    with httpx.Client(base_url=api, timeout=10) as http:
        for marker in markers:
            answer = http.get(f"/v1/devices/{marker['device']}/aqi", params={"scale": scale}).json()
            assert answer["aqi"] is not None, answer
            assert marker["text"] == str(answer["aqi"]), (marker, answer)
            assert marker["background"] == _rgb(answer["color"]), (marker, answer)
            assert contrast_ratio(_hex(marker["background"]), _hex(marker["color"])) >= 4.5, marker


def test_map_markers_show_the_servers_aqi_open_a_chart_switch_scale_and_follow_the_stream(
    browser: Browser, database_url: str, start_api: StartApi, tmp_path: Path
) -> None:
    fleet = make_fleet(24, n_spots=6)
    seed_fleet(database_url, fleet)
    api = start_api(database_url, map_tiles="").base_url  # offline: the bundled outline is the base
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = _console_errors(page)
    page.goto(f"{api}/map")
    page.wait_for_function("window.citysense && window.citysense.ready")
    _assert_markers_match_api(page, api, "tw_moenv_2025", 24)

    # Web Mercator: east-west and north-south distances on screen in the projection's ratio
    # (not degrees scaled equally, which stretched the first map ~10 % east-west at 25° N)
    a, b = fleet.boxes[0], fleet.boxes[-1]
    centres = page.evaluate(f"""() => ['{a.device_id}', '{b.device_id}'].map(id => {{
        const r = document.querySelector(`.aqi-num[data-device="${{id}}"]`).getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; }})""")
    (ax, ay), (bx, by) = centres

    def mercator_y(lat: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    expected = math.radians(b.lon - a.lon) / (mercator_y(b.lat) - mercator_y(a.lat))
    assert (bx - ax) / (ay - by) == pytest.approx(expected, rel=0.02)

    # the offline base: Taiwan's coast and Taipei's 12 districts, and a note that says so
    page.wait_for_function("document.querySelectorAll('.leaflet-overlay-pane path').length >= 13")
    assert page.is_visible("#offline")
    # parking: every bay coloured by its status, the zone's counts in words
    page.wait_for_function("document.querySelectorAll('.bay [data-status]').length === 6")
    statuses = page.eval_on_selector_all(".bay [data-status]", "els => els.map(e => e.dataset.status)")
    assert sorted(statuses) == ["free", "free", "occupied", "occupied", "occupied", "unknown"]
    zone = httpx.get(f"{api}/v1/parking/zones").json()["results"][0]
    assert f"{zone['free']} free · {zone['occupied']} occupied · {zone['unknown']} unknown" in page.inner_text("#zones")

    # keyboard: the first "highest now" entry opens its box's popup, whose chart has 24 h of points
    page.focus("#top button")
    page.keyboard.press("Enter")
    page.wait_for_selector(".popup .chart canvas")
    assert not errors, errors
    assert not _low_contrast(page)
    points = int(page.get_attribute(".popup .chart", "data-points") or 0)
    assert points >= 24
    popup = page.inner_text(".popup")
    assert "1.4.2" in popup and "µg/m³" in popup and "CSV" in popup
    page.screenshot(path=str(tmp_path / "map-popup.png"))

    # another scale: every marker again against the API
    page.keyboard.press("Escape")  # closes the popup and gives the focus back to its marker
    page.wait_for_selector(".popup", state="detached", timeout=5000)
    assert page.evaluate("document.activeElement.classList.contains('aqi-marker')")
    page.select_option("#scale", "us_epa_2024")
    page.wait_for_function("document.body.dataset.scale === 'us_epa_2024'")
    _assert_markers_match_api(page, api, "us_epa_2024", 24)
    page.screenshot(path=str(tmp_path / "map-us-epa.png"))

    # search by school name lists the school and a link to its page
    page.fill("#search", fleet.school.lower())
    assert page.is_visible(f"#results a[href='/schools/{fleet.school.replace(' ', '%20')}']")

    # a reading from a box at a new place moves its marker within 2 s of its commit
    moving = fleet.boxes[3].device_id
    update_device(database_url, moving, DeviceFields(lat=25.0800, lon=121.6000))
    written_ms = write_reading(database_url, moving, 15.0)
    page.wait_for_function(f"window.citysense.moved.some(m => m.device === '{moving}')", timeout=5000)
    moved_ms = page.evaluate(f"window.citysense.moved.find(m => m.device === '{moving}').at")
    print(f"\nmarker moved {moved_ms - written_ms:.0f} ms after the reading's write began")
    assert moved_ms - written_ms < 2000
    assert not errors, errors

    # on a phone the panel goes under the map, nothing scrolls sideways
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("document.documentElement.scrollWidth <= 390")
    page.screenshot(path=str(tmp_path / "map-phone.png"), full_page=True)
    page.close()


@pytest.mark.slow
def test_map_with_1000_devices_draws_every_marker_cold_and_warm(
    browser: Browser, database_url: str, start_api: StartApi, tmp_path: Path
) -> None:
    seed_fleet(database_url, make_fleet(1000), every_min=60)
    api = start_api(database_url, map_tiles="", api_rate_limit_per_s="0").base_url
    timings = []
    # how fast is `citysense bench api`'s to judge (devtools/bench/map_page.py, target 2 s), not a timed
    # test's: here the page must draw all 1,000 markers, cold and warm, and the timings are printed
    for attempt in ("cold", "warm"):  # cold: the API computes 1,000 indices; warm: from its cache
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{api}/map")
        page.wait_for_function("window.citysense && window.citysense.ready", timeout=10_000)
        nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
            const slow = performance.getEntriesByType('resource').filter(r => r.duration > 50)
              .map(r => `${new URL(r.name).pathname} ${Math.round(r.startTime)}+${Math.round(r.duration)} ms`);
            return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, markers: window.citysense.markersAt,
                    slow}; }""")
        assert page.locator(".aqi-num").count() == 1000
        timings.append((attempt, nav))
        if attempt == "cold":
            page.screenshot(path=str(tmp_path / "map-1000.png"))
        page.close()
    print("\n" + "\n".join(f"{a}: DOMContentLoaded {n['dcl']:.0f} ms, load {n['load']:.0f} ms, 1,000 markers "
                           f"drawn {n['markers']:.0f} ms; slowest requests: {n['slow']}" for a, n in timings))
    assert all(nav["markers"] > 0 for _, nav in timings)


def test_school_page_shows_its_aqi_advice_boxes_charts_and_exports_in_both_languages(
    browser: Browser, database_url: str, start_api: StartApi, tmp_path: Path
) -> None:
    fleet = make_fleet(9)
    seed_fleet(database_url, fleet)
    api = start_api(database_url, map_tiles="").base_url
    school_boxes = [b.device_id for b in fleet.boxes if b.school == fleet.school]
    with httpx.Client(base_url=api, timeout=10) as http:
        worst = max((http.get(f"/v1/devices/{d}/aqi").json() for d in school_boxes), key=lambda a: a["aqi"])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{api}/schools/{fleet.school}?lang=zh-Hant")
    page.wait_for_function("window.citysense && window.citysense.ready")
    assert page.get_attribute("html", "lang") == "zh-Hant"
    assert page.inner_text("#now-aqi") == str(worst["aqi"])
    assert page.inner_text("#now-label") == f"AQI {worst['aqi']} · {worst['category']['name_local']}"
    assert "室內" in page.inner_text("#now-advice") or "戶外" in page.inner_text("#now-advice")
    assert page.locator("#boxes tbody tr").count() == len(school_boxes)
    assert page.locator("#week-chart canvas").count() == 1 and page.locator("#day-chart canvas").count() == 1
    page.screenshot(path=str(tmp_path / "school-zh.png"), full_page=True)
    assert not _low_contrast(page)

    page.click("#lang")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.inner_text("#now-title") == "Air quality now"
    assert page.inner_text("#now-advice") and not re.search(r"[\u4e00-\u9fff]", page.inner_text("#now-advice"))
    page.screenshot(path=str(tmp_path / "school-en.png"), full_page=True)

    # the class export, both variants, one click each (the links' targets)
    csv_url = page.get_attribute("#export-csv", "href")
    sheet_url = page.get_attribute("#export-sheet", "href")
    assert csv_url and sheet_url
    csv = page.request.get(f"{api}{csv_url}")
    sheet = page.request.get(f"{api}{sheet_url}")
    assert csv.status == 200 and csv.text().startswith("time_utc,device_id")
    assert sheet.status == 200 and sheet.body().startswith("\ufefftime_local,device_id".encode())

    # a phone and a classroom projector: no sideways scrolling, the number stays big
    sizes: tuple[tuple[str, ViewportSize], ...] = (
        ("phone", {"width": 390, "height": 844}), ("projector", {"width": 1920, "height": 1080}))
    for name, size in sizes:
        page.set_viewport_size(size)
        time.sleep(0.3)  # the charts redraw for the new width
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        assert float(page.eval_on_selector("#now-aqi", "e => parseFloat(getComputedStyle(e).fontSize)")) >= 60
        page.screenshot(path=str(tmp_path / f"school-{name}.png"), full_page=True)

    # once the alert evaluator has set the school's flag, the page says what the light at the gate shows
    assert page.inner_text("#now-flag") == ""

    async def save_flag() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            flag = SchoolFlag(fleet.school, 3, "orange", "#ff7e00", 112, "tw_moenv_2025", "usg")
            await save_school_flag(conn, flag, datetime.now(UTC), changed=True)

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs an event loop in this thread
        pool.submit(asyncio.run, save_flag()).result()
    page.reload()
    page.wait_for_function("window.citysense && window.citysense.ready")
    page.wait_for_selector("#now-flag[data-colour='orange']")
    assert "112" in page.inner_text("#now-flag") and "對敏感族群不健康" in page.inner_text("#now-flag")  # ?lang=zh-Hant
    page.close()


def test_map_draws_the_configured_tiles_with_their_attribution_and_falls_back_to_the_outline(
    browser: Browser, database_url: str, start_api: StartApi
) -> None:
    seed_fleet(database_url, make_fleet(3))
    tiles = ThreadingHTTPServer(("127.0.0.1", free_port()), _TileHandler)
    serving = threading.Thread(target=tiles.serve_forever, daemon=True)
    serving.start()
    tile_url = f"http://127.0.0.1:{tiles.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    api = start_api(database_url, map_tiles=tile_url, map_tiles_attribution="Tiles: test server").base_url
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(f"{api}/map")
        page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
        assert "Tiles: test server" in page.inner_text(".leaflet-control-attribution")
        assert page.is_hidden("#offline")
        # keyboard: a marker takes focus and Enter opens its popup
        page.focus(".leaflet-marker-icon.aqi-marker")
        page.keyboard.press("Enter")
        page.wait_for_selector(".popup .chart canvas")
        page.close()
    finally:
        tiles.shutdown()
        tiles.server_close()
    page = browser.new_page(viewport={"width": 1000, "height": 700})  # the tile server is gone now
    page.goto(f"{api}/map")
    page.wait_for_selector("#offline", state="visible")
    assert page.locator("img.leaflet-tile-loaded").count() == 0
    page.wait_for_function("document.querySelectorAll('.leaflet-overlay-pane path').length >= 13")
    page.close()
