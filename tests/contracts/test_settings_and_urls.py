"""Configuration is validated once, with messages that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.settings import Settings
from contracts.urls import parse_mqtt_url


def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_MQTT_URL", "mqtt://gw:secret@broker.example:1884")
    monkeypatch.setenv("CITYSENSE_ACCEPT_UNKNOWN_DEVICES", "false")
    monkeypatch.setenv("CITYSENSE_BATCH_MAX_MESSAGES", "500")
    s = Settings()
    assert s.mqtt_url.endswith(":1884") and s.accept_unknown_devices is False and s.batch_max_messages == 500


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("CITYSENSE_MQTT_URL", "http://broker", "must start with mqtt://"),
        ("CITYSENSE_DATABASE_URL", "sqlite:///x.db", "must start with postgresql://"),
        ("CITYSENSE_BATCH_MAX_MESSAGES", "0", "greater than or equal to 1"),
        ("CITYSENSE_MQTT_PROTOCOL", "4", "'3.1.1' or '5'"),
    ],
)
def test_unsafe_settings_are_refused(monkeypatch: pytest.MonkeyPatch, var: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(")):
        Settings()


def test_mqtt_url_parts() -> None:
    e = parse_mqtt_url("mqtts://dev%2F1:p%40ss@example.org")
    assert (e.host, e.port, e.username, e.password, e.tls) == ("example.org", 8883, "dev/1", "p@ss", True)
    assert parse_mqtt_url("mqtt://127.0.0.1").port == 1883
    with pytest.raises(ValueError, match="not an MQTT URL"):
        parse_mqtt_url("tcp://x:1")


def test_default_client_id_differs_per_instance_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYSENSE_MQTT_CLIENT_ID", raising=False)
    monkeypatch.setattr("socket.gethostname", lambda: "gw.host_a")
    monkeypatch.setenv("CITYSENSE_GATEWAY_INSTANCE", "2")
    assert Settings().mqtt_client_id == "citysense-gateway-gw-host-a-2"
    monkeypatch.setenv("CITYSENSE_GATEWAY_INSTANCE", "3")
    assert Settings().mqtt_client_id == "citysense-gateway-gw-host-a-3"
    monkeypatch.setattr("socket.gethostname", lambda: "gw-host-b")
    assert Settings().mqtt_client_id == "citysense-gateway-gw-host-b-3"
    monkeypatch.setenv("CITYSENSE_MQTT_CLIENT_ID", "given-id")
    assert Settings().mqtt_client_id == "given-id"
    monkeypatch.setenv("CITYSENSE_GATEWAY_INSTANCE", "a b")
    with pytest.raises(ValidationError, match="gateway_instance"):
        Settings()


def test_every_setting_is_in_the_readme_table() -> None:
    """The README's configuration table is the whole truth about configuration (contracts/settings.py)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = [f"CITYSENSE_{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in names if f"`{name}`" not in readme]
    assert not missing, f"settings not documented in README.md: {missing}"
