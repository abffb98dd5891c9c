"""Every write to `devices` goes through ingest/device_store.py: the CLI and the API give the
same rows, an update changes only what it is given, a registered id keeps its token unless
rotation is asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from citysense.cli import app as cli_app
from contracts.settings import Settings, get_settings
from ingest.broker_files import verify
from ingest.device_store import (
    DeviceFields,
    DeviceRegisteredAlready,
    NewDevice,
    auto_register,
    register_device,
    register_device_async,
    register_devices,
    update_device,
)
from tests.conftest import count

ADMIN = {"Authorization": "Bearer s3cret"}
COLUMNS = "kind, name, site, school, lat, lon, owner, sensor_type, registered, retired_at IS NOT NULL"
SAME_INPUT: dict[str, Any] = {"name": "Gate box", "school": "Da'an Elementary", "site": "north gate",
                              "lat": 25.02, "lon": 121.54, "owner": "pta"}


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("CITYSENSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url, admin_token="s3cret"))) as client:
        yield client


def cli_args(device_id: str, values: dict[str, Any]) -> list[str]:
    args = ["device", "register", device_id]
    for key, value in values.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def row(database_url: str, device_id: str) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(f"SELECT {COLUMNS} FROM devices WHERE device_id = %s".encode(), (device_id,)).fetchone()
    assert found is not None, device_id
    return tuple(found)


def stored_token_hash(database_url: str, device_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT token_hash FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    assert found is not None
    return str(found[0])


def auto_registered(database_url: str, *devices: NewDevice) -> None:
    """Rows as the gateway stores an id it meets first (open network), through the same module."""

    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await auto_register(conn, devices)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.parametrize("values", [SAME_INPUT, {}, {"kind": "parking", "site": "ximen 12"}])
def test_cli_and_api_registration_store_identical_rows(
    cli: CliRunner, http: TestClient, database_url: str, values: dict[str, Any]
) -> None:
    result = cli.invoke(cli_app, cli_args("via-cli", values))
    assert result.exit_code == 0, result.output
    r = http.post("/v1/devices", json={"device_id": "via-api", **values}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert row(database_url, "via-cli") == row(database_url, "via-api")
    assert row(database_url, "via-cli")[-2:] == (True, False)  # registered, not retired


def test_claiming_an_auto_registered_id_keeps_its_position_the_same_way_in_cli_and_api(
    cli: CliRunner, http: TestClient, database_url: str
) -> None:
    auto_registered(database_url, NewDevice("seen-cli", "airbox", 25.1, 121.6), NewDevice("seen-api", "airbox",
                                                                                          25.1, 121.6))
    assert row(database_url, "seen-cli")[-2] is False
    assert cli.invoke(cli_app, cli_args("seen-cli", {"school": "Jianguo"})).exit_code == 0
    assert http.post("/v1/devices", json={"device_id": "seen-api", "school": "Jianguo"}, headers=ADMIN).status_code \
        == 201
    claimed = row(database_url, "seen-cli")
    assert claimed == row(database_url, "seen-api")
    assert claimed[3:6] == ("Jianguo", 25.1, 121.6) and claimed[7:9] == ("pms5003", True)


def test_update_changes_only_the_fields_given(cli: CliRunner, http: TestClient, database_url: str) -> None:
    for dev in ("upd-cli", "upd-api", "upd-lib"):
        register_device(database_url, device_id=dev, token="tok", **SAME_INPUT)
    before = row(database_url, "upd-cli")
    token_before = stored_token_hash(database_url, "upd-cli")
    assert cli.invoke(cli_app, ["device", "update", "upd-cli", "--school", "Other"]).exit_code == 0
    assert http.patch("/v1/devices/upd-api", json={"school": "Other"}, headers=ADMIN).status_code == 200
    update_device(database_url, "upd-lib", DeviceFields(school="Other"))
    expected = (*before[:3], "Other", *before[4:])
    for dev in ("upd-cli", "upd-api", "upd-lib"):
        assert row(database_url, dev) == expected
    assert stored_token_hash(database_url, "upd-cli") == token_before
    assert http.patch("/v1/devices/no-such-box", json={"name": "x"}, headers=ADMIN).status_code == 404
    assert cli.invoke(cli_app, ["device", "update", "no-such-box", "--name", "x"]).exit_code == 1
    assert http.patch("/v1/devices/upd-api", json={"lat": 25.0}, headers=ADMIN).status_code == 422  # lon missing


def test_re_registration_of_a_registered_id_is_refused_without_rotation(
    cli: CliRunner, http: TestClient, database_url: str
) -> None:
    assert cli.invoke(cli_app, cli_args("taken-box", SAME_INPUT)).exit_code == 0
    before, token_before = row(database_url, "taken-box"), stored_token_hash(database_url, "taken-box")
    again = cli.invoke(cli_app, cli_args("taken-box", {"name": "Hijack"}))
    assert again.exit_code == 1 and "--rotate-token" in again.output
    r = http.post("/v1/devices", json={"device_id": "taken-box", "name": "Hijack"}, headers=ADMIN)
    assert r.status_code == 409 and "rotate_token" in r.json()["detail"]
    assert row(database_url, "taken-box") == before
    assert stored_token_hash(database_url, "taken-box") == token_before


def test_rotation_changes_only_the_token(cli: CliRunner, http: TestClient, database_url: str) -> None:
    for dev in ("rot-cli", "rot-api"):
        assert cli.invoke(cli_app, cli_args(dev, SAME_INPUT)).exit_code == 0
    before = row(database_url, "rot-cli")
    old_hash = stored_token_hash(database_url, "rot-cli")
    rotated = cli.invoke(cli_app, ["device", "register", "rot-cli", "--rotate-token"])
    assert rotated.exit_code == 0 and "rotated the token" in rotated.output
    new_token = rotated.output.split("MQTT password: ")[1].split()[0]
    assert row(database_url, "rot-cli") == before
    assert verify(new_token, stored_token_hash(database_url, "rot-cli"))
    assert stored_token_hash(database_url, "rot-cli") != old_hash

    old_api_hash = stored_token_hash(database_url, "rot-api")
    r = http.post("/v1/devices", json={"device_id": "rot-api", "rotate_token": True}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["created"] is False
    assert row(database_url, "rot-api") == before
    assert verify(r.json()["mqtt"]["password"], stored_token_hash(database_url, "rot-api"))
    assert not verify(r.json()["mqtt"]["password"], old_api_hash)


def test_retirement_is_the_same_through_cli_and_api(cli: CliRunner, http: TestClient, database_url: str) -> None:
    for dev in ("old-cli", "old-api"):
        register_device(database_url, device_id=dev, token="tok")
    assert cli.invoke(cli_app, ["device", "retire", "old-cli"]).exit_code == 0
    assert http.post("/v1/devices/old-api/retire", headers=ADMIN).status_code == 200
    assert row(database_url, "old-cli") == row(database_url, "old-api")
    assert row(database_url, "old-cli")[-1] is True
    assert http.post("/v1/devices/old-api/retire").status_code == 401
    assert http.post("/v1/devices/never-was/retire", headers=ADMIN).status_code == 404


def test_api_path_commits_before_returning_even_inside_an_open_transaction(database_url: str) -> None:
    """A pooled connection may carry a transaction (a request's SET LOCAL): the registration
    must still be committed when the function returns, not when the pool takes it back."""

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await conn.execute("SET LOCAL statement_timeout = '5s'")  # opens a transaction
            await register_device_async(conn, "in-tx-box", DeviceFields(school="Jianguo"), "tok")
            with psycopg.connect(database_url) as other:  # another session sees only committed rows
                seen = other.execute("SELECT school FROM devices WHERE device_id = 'in-tx-box'").fetchone()
            assert seen == ("Jianguo",)

    asyncio.run(run())


def test_bulk_registration_gives_the_rows_single_registration_gives_and_is_all_or_none(database_url: str) -> None:
    register_device(database_url, device_id="one-by-one", token="tok", **SAME_INPUT)
    done = register_devices(database_url, [("in-bulk", DeviceFields(**SAME_INPUT)), ("in-bulk-2", DeviceFields())])
    assert [(r.device_id, r.created) for r, _token in done] == [("in-bulk", True), ("in-bulk-2", True)]
    assert row(database_url, "in-bulk") == row(database_url, "one-by-one")
    assert verify(done[0][1], stored_token_hash(database_url, "in-bulk"))
    with pytest.raises(DeviceRegisteredAlready):
        register_devices(database_url, [("bulk-new", DeviceFields()), ("in-bulk", DeviceFields(name="again"))])
    assert count(database_url, "SELECT count(*) FROM devices WHERE device_id = 'bulk-new'") == 0
    again = register_devices(database_url, [("in-bulk", DeviceFields())], rotate_token=True)
    assert again[0][0].created is False and row(database_url, "in-bulk") == row(database_url, "one-by-one")
