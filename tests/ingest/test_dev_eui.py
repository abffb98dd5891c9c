"""A LoRaWAN sensor's devEui is set by `citysense device register|update --dev-eui` through the
device store: normalised to ChirpStack's spelling, one device per EUI (refused with a sentence),
kept when not given, and announced to the gateways by the device trigger (migration 0012)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from citysense.cli import app as cli_app
from contracts.settings import Settings, get_settings
from gateway.device_registry import DEVICES_CHANNEL, DeviceRegistry
from ingest.device_store import DeviceFields, register_device, retire_device, update_device

EUI = "70b3d57ed005a1f2"


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("CITYSENSE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def dev_eui_of(database_url: str, device_id: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT dev_eui FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    assert found is not None
    return None if found[0] is None else str(found[0])


def test_cli_register_and_update_set_the_dev_eui_in_chirpstacks_spelling(cli: CliRunner, database_url: str) -> None:
    register = ["device", "register", "bay-0001", "--kind", "parking", "--dev-eui", "70-B3-D5-7E-D0-05-A1-F2"]
    done = cli.invoke(cli_app, register)
    assert done.exit_code == 0, done.output
    assert dev_eui_of(database_url, "bay-0001") == EUI
    cli.invoke(cli_app, ["device", "update", "bay-0001", "--name", "Bay 1"])
    assert dev_eui_of(database_url, "bay-0001") == EUI  # not given: kept
    done = cli.invoke(cli_app, ["device", "update", "bay-0001", "--dev-eui", "0004A30B001C0530"])
    assert done.exit_code == 0, done.output
    assert dev_eui_of(database_url, "bay-0001") == "0004a30b001c0530"


def test_the_api_sets_the_dev_eui_as_the_cli_does(database_url: str) -> None:
    admin = {"Authorization": "Bearer s3cret"}
    with TestClient(create_app(Settings(database_url=database_url, admin_token="s3cret"))) as http:
        made = http.post("/v1/devices", json={"device_id": "bay-0003", "kind": "parking",
                                               "dev_eui": "70:b3:d5:7e:d0:05:a1:f2"}, headers=admin)
        assert made.status_code == 201, made.text
        assert dev_eui_of(database_url, "bay-0003") == EUI
        taken = http.post("/v1/devices", json={"device_id": "bay-0004", "kind": "parking", "dev_eui": EUI},
                          headers=admin)
        assert taken.status_code == 422 and "belongs to another device already" in taken.json()["detail"]


def test_a_malformed_dev_eui_is_refused_with_a_sentence(cli: CliRunner, database_url: str) -> None:
    done = cli.invoke(cli_app, ["device", "register", "bay-0002", "--kind", "parking", "--dev-eui", "70b3d5"])
    assert done.exit_code != 0
    assert "is not 16 hexadecimal digits" in done.output


def test_one_dev_eui_is_one_device_until_that_device_retires(database_url: str) -> None:
    register_device(database_url, device_id="bay-0001", token="a" * 32, kind="parking", dev_eui=EUI)
    register_device(database_url, device_id="bay-0002", token="b" * 32, kind="parking")
    with pytest.raises(ValueError, match="belongs to another device already"):
        update_device(database_url, "bay-0002", DeviceFields(dev_eui=EUI.upper()))
    with pytest.raises(ValueError, match="belongs to another device already"):
        register_device(database_url, device_id="bay-0003", token="c" * 32, kind="parking", dev_eui=EUI)
    assert dev_eui_of(database_url, "bay-0002") is None
    retire_device(database_url, "bay-0001")  # the board moves to bay 2: retiring bay 1 frees its EUI
    assert dev_eui_of(database_url, "bay-0001") is None
    update_device(database_url, "bay-0002", DeviceFields(dev_eui=EUI))
    assert dev_eui_of(database_url, "bay-0002") == EUI


def test_a_dev_eui_change_is_notified_with_the_eui(database_url: str) -> None:
    register_device(database_url, device_id="bay-0001", token="a" * 32, kind="parking")
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {DEVICES_CHANNEL}".encode())
        update_device(database_url, "bay-0001", DeviceFields(dev_eui=EUI))
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads, "no NOTIFY for a devEui change"
    assert orjson.loads(payloads[0])["dev_eui"] == EUI


def test_the_registry_follows_a_dev_eui_through_notifications() -> None:
    registry = DeviceRegistry("postgresql://unused", accept_unknown=True)

    def notify(dev_eui: str | None, active: bool = True) -> None:
        registry.apply_device_notification(orjson.dumps(
            {"device_id": "bay-0001", "registered": True, "kind": "parking", "active": active, "op": "UPDATE",
             "dev_eui": dev_eui}
        ).decode())

    notify(EUI)
    assert registry.by_dev_eui == {EUI: "bay-0001"}
    notify("0004a30b001c0530")
    assert registry.by_dev_eui == {"0004a30b001c0530": "bay-0001"}  # the old EUI is free again
    notify("0004a30b001c0530", active=False)
    assert registry.by_dev_eui == {}
