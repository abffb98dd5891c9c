"""The air box's sensors from its configuration: the one map from config names to drivers.

main.py (the board's buses) and the host runner (fake buses, firmware/host/fakehw.py) both
call `build_sensors`, and config.py takes the names it accepts from here, so a new driver
is one builder function and one entry below: no edit to main.py, the host runner or the app.

- `pm_sensor` names one of PM_SENSORS: the particle sensor the air box wakes, lets settle,
  reads frame by frame and puts back to sleep; it gives PM_METRICS.
- `th_sensor`, then each name of `extra_sensors` (comma-separated), names one of
  READ_SENSORS: read once per cycle. The tuple its `read()` returns is published under the
  metric names listed beside its builder, in order; "" leaves that value out (a second
  sensor's own temperature, say). A metric already given by an earlier sensor is kept.

A builder gets the buses (`buses.i2c()`, `buses.uart()`, `buses.set_pin()`, each opened on
first use) and `sleep_ms`, and imports its driver itself: only configured drivers cost RAM.
A builder that fails (a chip that does not answer) is logged and left out; the box runs
with the others rather than not at all.
RAM: two small dicts of functions and tuples; one `Attached` per configured sensor.
"""

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable

    from config import Config
    from fwtypes import Buses, PMSensor, ReadSensor, SleepMs

    PMBuilder = Callable[[Buses, SleepMs], PMSensor]
    ReadBuilder = Callable[[Buses, SleepMs], ReadSensor]
    ErrorSink = Callable[[str, BaseException], None]

PM_METRICS = ("pm1", "pm25", "pm10")


def _pms5003(buses: "Buses", sleep_ms: "SleepMs") -> "PMSensor":
    from drivers.pms5003 import PMS5003

    return PMS5003(buses.uart(), sleep_ms, buses.set_pin())


def _pms3003(buses: "Buses", sleep_ms: "SleepMs") -> "PMSensor":
    from drivers.pms5003 import PMS3003

    return PMS3003(buses.uart(), sleep_ms, buses.set_pin())


def _sht31(buses: "Buses", sleep_ms: "SleepMs") -> "ReadSensor":
    from drivers.sht31 import SHT31

    return SHT31(buses.i2c(), sleep_ms)


def _bme280(buses: "Buses", sleep_ms: "SleepMs") -> "ReadSensor":
    from drivers.bme280 import BME280

    return BME280(buses.i2c(), sleep_ms)


PM_SENSORS: "dict[str, PMBuilder]" = {
    "pms5003": _pms5003,
    "pms3003": _pms3003,
}

READ_SENSORS: "dict[str, tuple[ReadBuilder, tuple[str, ...]]]" = {
    "sht31": (_sht31, ("t", "rh")),
    "bme280": (_bme280, ("t", "p", "rh")),
}


class Attached:
    """A sensor read once per cycle: its config name, the driver, the metric of each value it reads."""

    def __init__(self, name: str, driver: "ReadSensor", metrics: "tuple[str, ...]") -> None:
        self.name = name
        self.driver = driver
        self.metrics = metrics
        self.misses = 0


def read_sensor_names(th_sensor: object, extra_sensors: object) -> "list[str]":
    """`th_sensor` then every name of `extra_sensors`, in order, blanks dropped."""
    names: "list[str]" = []
    for value in (th_sensor, extra_sensors):
        if isinstance(value, str):
            for part in value.split(","):
                name = part.strip()
                if name and name not in names:
                    names.append(name)
    return names


def name_problems(pm_sensor: object, th_sensor: object, extra_sensors: object) -> "list[str]":
    """What config.check reports about the sensor names (each known to this module, or empty)."""
    problems: "list[str]" = []
    if isinstance(pm_sensor, str) and pm_sensor and pm_sensor not in PM_SENSORS:
        problems.append("'pm_sensor' must be one of %s or empty" % ", ".join(PM_SENSORS))
    for key, value in (("th_sensor", th_sensor), ("extra_sensors", extra_sensors)):
        for name in read_sensor_names(value, ""):
            if name not in READ_SENSORS:
                problems.append("'%s' names '%s'; known: %s" % (key, name, ", ".join(READ_SENSORS)))
    return problems


def published_metrics(cfg: "Config") -> "list[str]":
    """The metrics a box with this configuration publishes when every sensor answers, in order."""
    metrics: "list[str]" = list(PM_METRICS) if cfg["pm_sensor"] else []
    for name in read_sensor_names(cfg["th_sensor"], cfg["extra_sensors"]):
        for metric in READ_SENSORS[name][1]:
            if metric and metric not in metrics:
                metrics.append(metric)
    return metrics


def build_sensors(
    cfg: "Config", buses: "Buses", sleep_ms: "SleepMs", error: "ErrorSink"
) -> "tuple[PMSensor | None, list[Attached]]":
    """The PM sensor (None: none configured, or it failed) and the sensors read once per cycle."""
    pm: "PMSensor | None" = None
    if cfg["pm_sensor"]:
        try:
            pm = PM_SENSORS[cfg["pm_sensor"]](buses, sleep_ms)
        except Exception as exc:  # noqa: BLE001 - run without PM rather than not at all
            error("pm_init_failed", exc)
    attached: "list[Attached]" = []
    for name in read_sensor_names(cfg["th_sensor"], cfg["extra_sensors"]):
        builder, metrics = READ_SENSORS[name]
        try:
            attached.append(Attached(name, builder(buses, sleep_ms), metrics))
        except Exception as exc:  # noqa: BLE001 - one chip that does not answer must not stop the box
            error(name + "_init_failed", exc)
    return pm, attached
