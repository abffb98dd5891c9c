"""`citysense firmware flash` builds the right mpremote commands and refuses bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citysense import firmware_cli

GOOD = {
    "id": "tp-school-0042",
    "kind": "airbox",
    "wifi_ssid": "school",
    "wifi_password": "pw",
    "mqtt_host": "broker.city.example",
    "mqtt_password": "token-123",
}


def _config(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "device.json"
    path.write_text(json.dumps(data))
    return path


def test_flash_commands_install_umqtt_copy_build_and_config(tmp_path: Path) -> None:
    build = tmp_path / "build"
    for pkg in ("lib", "drivers", "airbox", "parking"):
        (build / pkg).mkdir(parents=True)
    cfg = _config(tmp_path, GOOD)
    cmds = firmware_cli.flash_commands("/dev/ttyUSB0", cfg, build)
    assert cmds[0] == ["mpremote", "connect", "/dev/ttyUSB0", "mip", "install", "umqtt.simple"]
    assert cmds[1] == [
        "mpremote",
        "connect",
        "/dev/ttyUSB0",
        "fs",
        "cp",
        "-r",
        "lib",
        "drivers",
        "airbox",
        "parking",
        ":",
    ]
    assert cmds[2] == ["mpremote", "connect", "/dev/ttyUSB0", "fs", "cp", "main.py", ":main.py"]
    assert cmds[3] == ["mpremote", "connect", "/dev/ttyUSB0", "fs", "cp", str(cfg.resolve()), ":config.json"]
    assert cmds[4] == ["mpremote", "connect", "/dev/ttyUSB0", "reset"]


def test_flash_dry_run_prints_the_exact_commands(tmp_path: Path) -> None:
    cfg = _config(tmp_path, GOOD)
    result = CliRunner().invoke(
        firmware_cli.app, ["flash", "--port", "COM3", "--config", str(cfg), "--build-dir", str(tmp_path), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "mpremote connect COM3 mip install umqtt.simple" in result.output
    assert f"mpremote connect COM3 fs cp {cfg.resolve()} :config.json" in result.output


def test_flash_refuses_an_invalid_config_with_the_reason(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {**GOOD, "id": "Not Valid", "interval_s": 0})
    result = CliRunner().invoke(firmware_cli.app, ["flash", "--port", "COM3", "--config", str(cfg), "--dry-run"])
    assert result.exit_code == 2
    assert "'interval_s' value 0 outside 1..86400" in result.output
    assert "must match [a-z0-9-]{3,64}" in result.output


def test_run_set_takes_numbers_as_numbers_and_the_rest_as_text() -> None:
    assert firmware_cli.parse_config_setting("interval_s=5") == ("interval_s", 5)
    assert firmware_cli.parse_config_setting("th_low_ut=4.5") == ("th_low_ut", 4.5)
    assert firmware_cli.parse_config_setting("extra_sensors=scd41,bme280") == ("extra_sensors", "scd41,bme280")
    assert firmware_cli.parse_config_setting("wifi_ssid=true") == ("wifi_ssid", "true")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        firmware_cli.parse_config_setting("extra_sensors")
