"""/docs and /redoc work offline: every script, style and icon they load is served by the API itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings


@pytest.mark.parametrize(("page", "needs"), [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png"}),
])
def test_docs_pages_load_every_asset_from_the_api_not_a_cdn(page: str, needs: set[str]) -> None:
    http = TestClient(create_app(Settings()))
    html = http.get(page).text
    assert not re.search(r"https?://", html), re.findall(r"https?://\S+", html)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {asset.rsplit("/", 1)[-1] for asset in assets} == needs
    for asset in assets:
        r = http.get(asset)
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert "/openapi.json" in html and http.get("/openapi.json").json()["openapi"].startswith("3.1")

