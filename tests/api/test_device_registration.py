"""`POST /v1/devices` answers only after its write is committed: a device it reports is there.

Served by a real uvicorn on a loopback port, not TestClient: TestClient returns only when the
whole application call has finished, so it cannot see an answer that leaves before the commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn

from api.app import create_app
from contracts.settings import Settings
from devtools.ports import free_port

ADMIN = {"Authorization": "Bearer s3cret"}
REGISTRATIONS = 300


@pytest.fixture
def http(database_url: str) -> Iterator[httpx.Client]:
    app = create_app(Settings(database_url=database_url, admin_token="s3cret"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)


def test_every_registered_device_is_readable_immediately(http: httpx.Client, database_url: str) -> None:
    missing_api, missing_db = [], []
    with psycopg.connect(database_url, autocommit=True) as reader:  # another session: sees only commits
        for i in range(REGISTRATIONS):
            device_id = f"fresh-box-{i:03d}"
            r = http.post("/v1/devices", json={"device_id": device_id, "school": "Jianguo"}, headers=ADMIN)
            assert r.status_code == 201, r.text
            if reader.execute("SELECT 1 FROM devices WHERE device_id = %s AND registered", (device_id,)).fetchone() \
                    is None:
                missing_db.append(device_id)
            if http.get(f"/v1/devices/{device_id}").status_code != 200:
                missing_api.append(device_id)
    assert (missing_db, missing_api) == ([], [])


def test_a_refused_re_registration_leaves_the_first_token_working(http: httpx.Client, database_url: str) -> None:
    first = http.post("/v1/devices", json={"device_id": "twice-box"}, headers=ADMIN)
    assert first.status_code == 201
    second = http.post("/v1/devices", json={"device_id": "twice-box", "school": "X"}, headers=ADMIN)
    assert second.status_code == 409
    assert "password" not in second.text
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT school FROM devices WHERE device_id = 'twice-box'").fetchone() == (None,)
