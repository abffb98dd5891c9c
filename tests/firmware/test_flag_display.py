"""The school flag display (firmware/flag/app.py): the retained flag topic on a real Mosquitto
lights the fake RGB LED of the host runner in the flag's colour, through the real LED drivers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import config as fw_config
import fakeled
import pytest
from drivers.rgbled import PixelLed, PWMRGBLed, duty_u16
from flag.app import FlagError, flag_topic, parse_flag
from hostflag import HostFlagDisplay

from citysense import firmware_cli
from tests.conftest import wait_until

SCHOOL = "tp-es-0042"


def flag_message(colour: str, rgb: str, aqi: int | None, school: str = SCHOOL) -> bytes:
    """A flag message as the evaluator publishes it (the contract of issue 15)."""
    return json.dumps({
        "school": school, "colour": colour, "rgb": rgb, "aqi": aqi, "scale": "moenv",
        "category": colour, "at": "2026-12-01T08:00:00Z",
    }).encode()


def publish_retained(port: int, school: str, payload: bytes) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-r", "-t", flag_topic(school), "-s"],
        input=payload, check=True, timeout=10,
    )


@pytest.fixture
def displays() -> Iterator[Any]:
    started: list[HostFlagDisplay] = []

    def start(broker_url: str, **kwargs: Any) -> HostFlagDisplay:
        started.append(HostFlagDisplay(SCHOOL, broker_url, **kwargs).start())
        return started[-1]

    yield start
    for display in started:
        display.stop()
        assert display.error is None


def test_a_common_cathode_leg_is_lit_by_a_high_duty_and_a_common_anode_leg_by_a_low_one() -> None:
    assert (duty_u16(255, False), duty_u16(0, False)) == (65535, 0)
    assert (duty_u16(255, True), duty_u16(0, True)) == (0, 65535)
    assert duty_u16(300, False) == 65535 and duty_u16(-4, True) == 65535


def test_both_drivers_show_the_colour_they_are_given() -> None:
    for anode in (False, True):
        fake = fakeled.FakeRGBLed(common_anode=anode)
        led = PWMRGBLed(fake.red, fake.green, fake.blue, common_anode=anode)
        assert fake.colour() == (0, 0, 0)  # dark from the start, whatever the wiring
        led.show((255, 126, 0))
        assert fake.colour() == (255, 126, 0)
    strip = fakeled.FakeNeoPixel(5)
    PixelLed(strip, 5).show((143, 63, 151))
    assert strip.shown == [(143, 63, 151)] * 5


def test_a_flag_message_gives_its_rgb_and_a_wrong_one_is_refused_with_the_reason() -> None:
    assert parse_flag(flag_message("orange", "#ff7e00", 128), SCHOOL) == ((255, 126, 0), "orange")
    assert parse_flag(flag_message("green", "#00E400", None), SCHOOL) == ((0, 228, 0), "green")
    refusals = {
        b"not json": "not JSON",
        b"[1, 2]": "JSON object",
        flag_message("red", "#ff0000", 160, school="tp-es-0043"): "for school 'tp-es-0043'",
        flag_message("red", "red", 160): "not #rrggbb",
        flag_message("red", "#ff00zz", 160): "not #rrggbb",
    }
    for payload, reason in refusals.items():
        with pytest.raises(FlagError, match=reason):
            parse_flag(payload, SCHOOL)


def test_a_school_id_that_is_not_one_topic_level_is_refused() -> None:
    assert flag_topic(SCHOOL) == "citysense/v1/school/tp-es-0042/flag"
    for bad in ("", "a/b", "+", "#"):
        with pytest.raises(FlagError):
            flag_topic(bad)


def test_the_device_config_takes_a_flag_display_and_refuses_an_unknown_led_driver() -> None:
    fw_config.check({"id": "gate-flag-01", "kind": "flag", "flag_school": SCHOOL, "led_driver": "neopixel"})
    with pytest.raises(fw_config.ConfigError, match="led_driver"):
        fw_config.check({"kind": "flag", "led_driver": "pwm"})


@pytest.mark.parametrize("driver", ["pwm-cathode", "pwm-anode", "neopixel"])
def test_the_retained_flag_lights_the_led_and_each_new_flag_changes_it(
    mosquitto: Any, displays: Any, driver: str
) -> None:
    publish_retained(mosquitto.port, SCHOOL, flag_message("yellow", "#ffff00", 62))
    display = displays(mosquitto.url, driver=driver)  # connects after the flag was set: the retained copy
    wait_until(lambda: display.colour() == (255, 255, 0), 10, what="the LED yellow")
    publish_retained(mosquitto.port, SCHOOL, flag_message("red", "#ff0000", 162))
    wait_until(lambda: display.colour() == (255, 0, 0), 10, what="the LED red")
    assert display.display.colour == "red"


def test_a_refused_message_leaves_the_led_as_it_was(mosquitto: Any, displays: Any) -> None:
    publish_retained(mosquitto.port, SCHOOL, flag_message("orange", "#ff7e00", 120))
    display = displays(mosquitto.url)
    wait_until(lambda: display.colour() == (255, 126, 0), 10, what="the LED orange")
    publish_retained(mosquitto.port, SCHOOL, flag_message("purple", "#8f3f97", 230, school="someone-else"))
    wait_until(lambda: display.display.refused == 1, 10, what="the message refused")
    assert display.colour() == (255, 126, 0)


def test_the_led_goes_dark_without_the_broker_and_shows_the_flag_again_on_reconnect(
    mosquitto: Any, displays: Any
) -> None:
    publish_retained(mosquitto.port, SCHOOL, flag_message("green", "#00e400", 30))
    time.sleep(1.2)  # the broker's autosave (1 s) keeps the retained flag across its restart
    display = displays(mosquitto.url, offline_ms=1000)
    wait_until(lambda: display.colour() == (0, 228, 0), 10, what="the LED green")
    mosquitto.stop()
    wait_until(lambda: display.colour() == (0, 0, 0), 10, what="the LED dark")
    mosquitto.start()
    wait_until(lambda: display.colour() == (0, 228, 0), 20, what="the LED green again")


def test_the_flag_app_and_led_driver_compile_with_mpy_cross(tmp_path: Path) -> None:
    out = tmp_path / "build"
    firmware_cli.build(out)
    assert (out / "flag" / "app.mpy").exists() and (out / "drivers" / "rgbled.mpy").exists()
