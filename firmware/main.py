"""Device entry point: load the config, join WiFi, build the hardware, run the application.

Copied to the board's root by `citysense firmware flash`. The lib/ modules live
in /lib (with umqtt from mip), the packages in /drivers, /airbox, /parking. Any failure at
start-up is logged and answered with setup mode or a delayed reset, never a
tight crash loop.
"""

import gc
import sys
import time

import machine
import network

from clock import Clock, sleep_ms
from config import Config
from device import Device, mem_free, run_loop
from flashqueue import FlashQueue
from log import log
from sensorconfig import build_sensors
from seq import SeqCounter
from session import Session
from watchdog import Watchdog, reset_cause
from wifi import SetupPortal, Station

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable

    from airbox.app import AirBox
    from fwtypes import I2CBus, MQTTClientClass, OutputPin, RGBLed, UARTPort
    from parking.app import ParkingSensor


SETUP_TIMEOUT_MS = 10 * 60 * 1000


def setup_mode(cfg: Config, reason: str, wdt: "Watchdog | None" = None) -> None:
    """Serve the setup form for up to 10 minutes, then reset (to try the saved or old settings)."""
    import socket

    portal = SetupPortal(cfg, socket, reason)
    portal.open_access_point(network)
    portal.serve(feed=wdt.feed if wdt is not None else None, timeout_ms=SETUP_TIMEOUT_MS)
    sleep_ms(2000)
    machine.reset()


class BoardBuses:
    """The board's I2C bus, UART and PMS3003 SET pin on the configured pins, each opened on first use."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._i2c: "I2CBus | None" = None
        self._uart: "UARTPort | None" = None

    def i2c(self) -> "I2CBus":
        if self._i2c is None:
            cfg = self.cfg
            self._i2c = machine.I2C(cfg["i2c_id"], sda=machine.Pin(cfg["i2c_sda"]), scl=machine.Pin(cfg["i2c_scl"]))
        return self._i2c

    def uart(self) -> "UARTPort":
        if self._uart is None:
            cfg = self.cfg
            self._uart = machine.UART(cfg["uart_id"], 9600, tx=cfg["uart_tx"], rx=cfg["uart_rx"], timeout=0)
        return self._uart

    def set_pin(self) -> "OutputPin | None":
        pin = self.cfg["pms_set_pin"]
        return machine.Pin(pin, machine.Pin.OUT) if pin >= 0 else None


def build_airbox(cfg: Config, device: Device) -> "AirBox":
    """The air box with the sensors its configuration names (lib/sensorconfig.py)."""
    from airbox.app import AirBox

    pm, sensors = build_sensors(cfg, BoardBuses(cfg), sleep_ms, device.error)
    return AirBox(device, cfg, pm, sensors)


def build_parking(cfg: Config, device: Device) -> "ParkingSensor":
    from drivers.qmc5883l import QMC5883L
    from parking.app import ParkingSensor

    i2c = machine.I2C(cfg["i2c_id"], sda=machine.Pin(cfg["i2c_sda"]), scl=machine.Pin(cfg["i2c_scl"]))
    mag = QMC5883L(i2c)
    battery: "Callable[[], int] | None" = None
    if cfg["batt_adc_pin"] >= 0:
        adc = machine.ADC(machine.Pin(cfg["batt_adc_pin"]))
        try:
            adc.atten(machine.ADC.ATTN_11DB)  # ESP32: full range ~3.1 V
        except (AttributeError, ValueError):
            pass

        def battery() -> int:  # battery through a 1:2 divider (two equal resistors)
            try:
                return adc.read_uv() * 2 // 1000  # ESP32: calibrated microvolts
            except AttributeError:
                return adc.read_u16() * 6600 // 65535  # RP2: 3.3 V reference

    return ParkingSensor(device, cfg, mag, battery)


def build_led(cfg: Config) -> "RGBLed":
    """The flag display's LED: three PWM pins (common cathode or anode) or a NeoPixel chain."""
    from drivers.rgbled import PixelLed, PWMRGBLed

    if cfg["led_driver"] == "neopixel":
        import neopixel

        pin = machine.Pin(cfg["led_pixel_pin"], machine.Pin.OUT)
        return PixelLed(neopixel.NeoPixel(pin, cfg["led_pixels"]), cfg["led_pixels"])
    red, green, blue = (
        machine.PWM(machine.Pin(cfg[key], machine.Pin.OUT), freq=1000) for key in ("led_r_pin", "led_g_pin", "led_b_pin")
    )
    return PWMRGBLed(red, green, blue, common_anode=cfg["led_driver"] == "pwm-anode")


def run_flag(cfg: Config, station: Station, wdt: Watchdog, client_class: "MQTTClientClass") -> None:
    """Kind "flag": show the school's air-quality flag (flag/app.py); no readings, no queue."""
    from flag.app import FlagDisplay, FlagError, flag_topic, run

    try:
        topic = flag_topic(cfg["flag_school"])
    except FlagError as exc:
        setup_mode(cfg, str(exc), wdt)
        return
    session = Session(
        client_class, cfg["id"], cfg["kind"], cfg["mqtt_host"], cfg["mqtt_port"],
        cfg["mqtt_user"], cfg["mqtt_password"], cfg["mqtt_keepalive"], topics=(topic,), will=False,
    )
    display = FlagDisplay(session, build_led(cfg), cfg["flag_school"], cfg["flag_offline_s"] * 1000)
    log("running", kind="flag", school=cfg["flag_school"], free=mem_free())

    def stop() -> bool:
        if not station.isconnected() and not station.ensure():
            if station.failures >= cfg["wifi_max_failures"]:
                setup_mode(cfg, "lost WiFi '%s'" % cfg["wifi_ssid"], wdt)
        return False

    run(display, sleep_ms, stop, wdt.feed)


def main() -> None:
    cause = reset_cause(machine)
    log("boot", reset=cause)
    cfg = Config("config.json")
    if not cfg.is_provisioned():
        setup_mode(cfg, cfg.error or "not configured")
    wdt = Watchdog(machine, cfg["wdt_ms"])
    station = Station(network, cfg["wifi_ssid"], cfg["wifi_password"], wdt.feed)
    while not station.ensure():
        wdt.feed()
        if station.failures >= cfg["wifi_max_failures"]:
            setup_mode(cfg, "could not join WiFi '%s'" % cfg["wifi_ssid"], wdt)
        sleep_ms(500)
    try:
        from umqtt.simple import MQTTClient
    except ImportError:
        log("umqtt_missing", fix="mpremote mip install umqtt.simple")
        raise
    if cfg["kind"] == "flag":
        run_flag(cfg, station, wdt, MQTTClient)
        return
    import ntptime

    session = Session(
        MQTTClient, cfg["id"], cfg["kind"], cfg["mqtt_host"], cfg["mqtt_port"],
        cfg["mqtt_user"], cfg["mqtt_password"], cfg["mqtt_keepalive"],
    )
    queue = FlashQueue("queue.bin", cfg["queue_slots"])
    device = Device(
        cfg, session, queue, SeqCounter("seq.txt"), Clock(ntptime, cfg["ntp_host"]), wdt, cause, station.info
    )
    app = build_airbox(cfg, device) if cfg["kind"] == "airbox" else build_parking(cfg, device)
    device.on_config = app.reconfigure
    gc.collect()
    log("running", kind=cfg["kind"], free=mem_free())

    def stop() -> bool:
        if not station.isconnected() and not station.ensure():
            if station.failures >= cfg["wifi_max_failures"]:
                setup_mode(cfg, "lost WiFi '%s'" % cfg["wifi_ssid"], wdt)
        if device.want_setup:
            setup_mode(cfg, device.want_setup, wdt)
        return False

    run_loop(device, app, sleep_ms, stop)


if __name__ == "__main__":  # MicroPython runs main.py as __main__; tests import it
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - last resort: log, wait, reset (no tight crash loop)
        sys.print_exception(exc)
        time.sleep(30)
        machine.reset()
