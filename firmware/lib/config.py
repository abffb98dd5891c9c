"""Device configuration: a JSON file on flash, defaults, validation, remote updates.

The file holds only what differs from DEFAULTS. `schema` is the file format
version (migrations go in `_migrate`); `version` is the revision of the
server-side config (retained `citysense/v1/{kind}/{id}/config`) last applied,
reported in the status message. Writes are atomic (temp file + rename).
A corrupt file is renamed to `<path>.bad`, logged, and the defaults are used,
so the device comes up in setup mode instead of a crash loop.
RAM: one dict of ~40 small entries.
"""

import json
import os

from flashfile import recover, replace
from log import log
from sensorconfig import name_problems

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any

SCHEMA = 1

# Values are int, float or str as RULES says; mypy sees them as `object` and the
# typed reads go through Config.__getitem__ (see there).
DEFAULTS: "dict[str, object]" = {
    "schema": SCHEMA,
    "version": 0,
    "id": "",
    "kind": "airbox",
    "wifi_ssid": "",
    "wifi_password": "",
    "mqtt_host": "",
    "mqtt_port": 1883,
    "mqtt_user": "",
    "mqtt_password": "",
    "mqtt_keepalive": 60,
    "ntp_host": "pool.ntp.org",
    "wifi_max_failures": 10,
    "auth_max_failures": 5,
    "wdt_ms": 8000,
    "queue_slots": 1536,
    # resend what the gateway has not confirmed after this long without a receipt
    "receipt_timeout_s": 60,
    # air box
    "interval_s": 60,
    "settle_s": 30,
    "frames": 5,
    "status_every_s": 600,
    "pm_sensor": "pms5003",
    "th_sensor": "sht31",
    "extra_sensors": "",
    "uart_id": 1,
    "uart_tx": 17,
    "uart_rx": 16,
    "pms_set_pin": -1,
    "i2c_id": 0,
    "i2c_sda": 21,
    "i2c_scl": 22,
    # parking
    "sample_ms": 1000,
    "th_high_ut": 12.0,
    "th_low_ut": 6.0,
    "debounce": 3,
    "learn_samples": 30,
    "baseline_alpha": 0.02,
    "heartbeat_every_s": 1800,
    "batt_adc_pin": -1,
    # school flag display (kind "flag")
    "flag_school": "",
    "led_driver": "pwm-cathode",
    "led_r_pin": 25,
    "led_g_pin": 26,
    "led_b_pin": 27,
    "led_pixel_pin": 5,
    "led_pixels": 1,
    "flag_offline_s": 600,
}

# key -> (type, minimum, maximum); strings use (str, min length, max length).
RULES: "dict[str, tuple[type, int | float, int | float]]" = {
    "schema": (int, 1, SCHEMA),
    "version": (int, 0, 2**31 - 1),
    "id": (str, 0, 64),
    "kind": (str, 4, 7),
    "wifi_ssid": (str, 0, 32),
    "wifi_password": (str, 0, 64),
    "mqtt_host": (str, 0, 128),
    "mqtt_port": (int, 1, 65535),
    "mqtt_user": (str, 0, 64),
    "mqtt_password": (str, 0, 128),
    "mqtt_keepalive": (int, 0, 3600),
    "ntp_host": (str, 0, 64),
    "wifi_max_failures": (int, 1, 1000),
    "auth_max_failures": (int, 1, 1000),
    "wdt_ms": (int, 0, 60000),
    "queue_slots": (int, 16, 1600),
    "receipt_timeout_s": (int, 1, 3600),
    "interval_s": (int, 1, 86400),
    "settle_s": (int, 0, 120),
    "frames": (int, 1, 30),
    "status_every_s": (int, 10, 86400),
    "pm_sensor": (str, 0, 16),
    "th_sensor": (str, 0, 16),
    "extra_sensors": (str, 0, 64),
    "uart_id": (int, 0, 2),
    "uart_tx": (int, -1, 48),
    "uart_rx": (int, -1, 48),
    "pms_set_pin": (int, -1, 48),
    "i2c_id": (int, 0, 1),
    "i2c_sda": (int, -1, 48),
    "i2c_scl": (int, -1, 48),
    "sample_ms": (int, 100, 60000),
    "th_high_ut": (float, 0.5, 500.0),
    "th_low_ut": (float, 0.1, 500.0),
    "debounce": (int, 1, 60),
    "learn_samples": (int, 3, 600),
    "baseline_alpha": (float, 0.0, 0.5),
    "heartbeat_every_s": (int, 10, 86400),
    "batt_adc_pin": (int, -1, 48),
    "flag_school": (str, 0, 64),
    "led_driver": (str, 8, 11),
    "led_r_pin": (int, -1, 48),
    "led_g_pin": (int, -1, 48),
    "led_b_pin": (int, -1, 48),
    "led_pixel_pin": (int, -1, 48),
    "led_pixels": (int, 1, 300),
    "flag_offline_s": (int, 10, 86400),
}

# Keys the server may change through the retained config topic.
REMOTE_KEYS = (
    "version", "interval_s", "settle_s", "frames", "status_every_s", "sample_ms",
    "th_high_ut", "th_low_ut", "debounce", "learn_samples", "baseline_alpha",
    "heartbeat_every_s", "mqtt_keepalive",
)
# Sensor names (pm_sensor, th_sensor, extra_sensors) are checked against lib/sensorconfig.py's registry.
CHOICES = {"kind": ("airbox", "parking", "flag"), "led_driver": ("pwm-cathode", "pwm-anode", "neopixel")}


class ConfigError(ValueError):
    pass


def valid_device_id(value: str) -> bool:
    """True for ids matching [a-z0-9-]{3,64} (the MQTT contract)."""
    if not 3 <= len(value) <= 64:
        return False
    for ch in value:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "-"):
            return False
    return True


def check(cfg: "dict[str, object]") -> None:
    """Raise ConfigError naming every bad field; coerce ints given for float fields."""
    problems = []
    for key, value in cfg.items():
        rule = RULES.get(key)
        if rule is None:
            problems.append("unknown field '%s'" % key)
            continue
        kind, lo, hi = rule
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            cfg[key] = value
        if isinstance(value, bool) or not isinstance(value, kind):
            problems.append("'%s' must be %s, got %r" % (key, kind.__name__, value))
            continue
        if isinstance(value, str):
            size: "int | float" = len(value)
        elif isinstance(value, (int, float)):
            size = value
        else:  # not reached: RULES has only str, int and float fields
            continue
        if size < lo or size > hi:
            what = "length" if kind is str else "value"
            problems.append("'%s' %s %r outside %r..%r" % (key, what, size, lo, hi))
        elif key in CHOICES and value not in CHOICES[key]:
            problems.append("'%s' must be one of %s" % (key, ", ".join(CHOICES[key])))
    dev = cfg.get("id", "")
    if isinstance(dev, str) and dev and not valid_device_id(dev):  # a non-str id was refused above
        problems.append("'id' %r must match [a-z0-9-]{3,64}" % dev)
    problems += name_problems(cfg.get("pm_sensor"), cfg.get("th_sensor"), cfg.get("extra_sensors"))
    low = cfg.get("th_low_ut", DEFAULTS["th_low_ut"])
    high = cfg.get("th_high_ut", DEFAULTS["th_high_ut"])
    if isinstance(low, float) and isinstance(high, float) and low >= high:
        problems.append("'th_low_ut' (%r) must be below 'th_high_ut' (%r)" % (low, high))
    if problems:
        raise ConfigError("; ".join(problems))


def _migrate(data: "dict[str, object]") -> "dict[str, object]":
    """Bring an older file format up to SCHEMA (only schema 1 exists so far)."""
    data.setdefault("schema", SCHEMA)
    return data


class Config:
    """Merged view (defaults + file). Read with cfg["key"]."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stored: "dict[str, object]" = {}
        self.error: "str | None" = None
        self.load()

    def __getitem__(self, key: str) -> "Any":
        """The value of `key`: of the type RULES gives it, which check() enforced on load and update.

        Typed `Any` because the type depends on the key (a TypedDict would write every
        key a second time, beside RULES); the callers use the value as RULES says.
        """
        if key in self.stored:
            return self.stored[key]
        return DEFAULTS[key]

    def get(self, key: str, default: object = None) -> object:
        if key in self.stored:
            return self.stored[key]
        return DEFAULTS.get(key, default)

    def load(self) -> None:
        recover(self.path)
        try:
            with open(self.path) as f:
                data = json.load(f)
            if not isinstance(data, dict):
                raise ConfigError("top level must be an object")
            data = _migrate(data)
            check(data)
            self.stored = data
            self.error = None
        except OSError:
            self.stored = {}
            self.error = "no config file"
            log("config_missing", path=self.path)
        except (ValueError, ConfigError) as exc:  # JSON errors are ValueError
            self.stored = {}
            self.error = str(exc)
            log("config_invalid", path=self.path, reason=self.error)
            try:
                os.rename(self.path, self.path + ".bad")
            except OSError:
                pass

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.stored, f)
        replace(tmp, self.path)

    def update(self, changes: "dict[str, object]", allowed: "tuple[str, ...] | None" = None) -> None:
        """Validate and apply `changes`; on error nothing changes (ConfigError)."""
        if allowed is not None:
            for key in changes:
                if key not in allowed:
                    raise ConfigError("field '%s' may not be set remotely" % key)
        merged = dict(self.stored)
        merged.update(changes)
        check(merged)
        self.stored = merged
        self.save()

    def apply_remote(self, payload: bytes) -> bool:
        """Apply a retained config message (bytes). Returns True if something changed.

        Raises ConfigError with the reason when the message is refused.
        """
        try:
            data = json.loads(payload)
        except ValueError:
            raise ConfigError("config message is not JSON")
        if not isinstance(data, dict):
            raise ConfigError("config message must be a JSON object")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ConfigError("config message needs an integer 'version'")
        if version <= self["version"]:
            return False
        self.update(data, REMOTE_KEYS)
        return True

    def is_provisioned(self) -> bool:
        return bool(self["id"] and self["wifi_ssid"] and self["mqtt_host"])
