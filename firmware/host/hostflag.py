"""Run the school flag display (firmware/flag/app.py) on CPython against a fake RGB LED.

The firmware modules are imported unchanged, as in hostrun.py (whose install_paths() puts the
shims and firmware folders on sys.path); the LED is a fake from fakeled.py driven through the
real driver (drivers/rgbled.py), and the display talks MQTT to a real broker. A separate entry
point from hostrun.py: a flag display has no sensors, queue or readings.

Also a script: `python firmware/host/hostflag.py --broker mqtt://127.0.0.1:1883 --school tp-es-01`
prints each colour the LED takes.
"""

# ruff: noqa: PLC0415 - firmware modules are imported after install_paths() puts them on sys.path

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from hostrun import install_paths, parse_broker_url

install_paths()

import fakeled  # noqa: E402  (firmware/host module, on the path from install_paths)

logger = logging.getLogger("citysense.firmware.host.flag")


class HostFlagDisplay:
    """One flag display in a thread: `led` is the fake LED (FakeRGBLed or FakeNeoPixel)."""

    def __init__(self, school: str, broker_url: str, device_id: str = "flag-host", driver: str = "pwm-cathode",
                 pixels: int = 8, offline_ms: int = 600000) -> None:
        from drivers.rgbled import PixelLed, PWMRGBLed
        from flag.app import FlagDisplay, flag_topic
        from session import Session
        from umqtt.simple import MQTTClient

        host, port, user, password = parse_broker_url(broker_url)
        session = Session(
            MQTTClient, device_id, "flag", host, port, user, password, 30, topics=(flag_topic(school),), will=False
        )
        self.led: fakeled.FakeNeoPixel | fakeled.FakeRGBLed
        if driver == "neopixel":
            self.led = fakeled.FakeNeoPixel(pixels)
            driven: Any = PixelLed(self.led, pixels)
        elif driver in ("pwm-cathode", "pwm-anode"):
            self.led = fakeled.FakeRGBLed(common_anode=driver == "pwm-anode")
            driven = PWMRGBLed(self.led.red, self.led.green, self.led.blue, common_anode=self.led.common_anode)
        else:
            raise ValueError(f"unknown LED driver {driver!r} (pwm-cathode, pwm-anode or neopixel)")
        self.display = FlagDisplay(session, driven, school, offline_ms)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=device_id, daemon=True)

    def colour(self) -> tuple[int, int, int]:
        """What the fake LED shows now (the first pixel of a chain)."""
        if isinstance(self.led, fakeled.FakeNeoPixel):
            return self.led.shown[0]
        colour: tuple[int, int, int] = self.led.colour()
        return colour

    def _sleep(self, ms: int) -> None:
        self.stop_event.wait(ms / 1000.0)

    def _run(self) -> None:
        from flag.app import run

        try:
            run(self.display, self._sleep, self.stop_event.is_set)
        except BaseException as exc:
            self.error = exc
            logger.exception("flag display failed")

    def start(self) -> HostFlagDisplay:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the school flag display on a fake RGB LED.")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--school", required=True)
    parser.add_argument("--driver", default="pwm-cathode", choices=("pwm-cathode", "pwm-anode", "neopixel"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    display = HostFlagDisplay(args.school, args.broker, driver=args.driver).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    last = None
    while not done.wait(0.5):
        if display.colour() != last:
            last = display.colour()
            print("led #{:02x}{:02x}{:02x}".format(*last), flush=True)
    display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
