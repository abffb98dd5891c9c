"""The air box: every interval wake the PM sensor, let it settle, average frames, read T/RH, publish.

A small state machine driven by `tick()`, so the main loop keeps servicing
MQTT and the watchdog while the PM sensor settles: IDLE -> SETTLING (sensor
awake, fan spinning) -> SAMPLING (one frame per `frame_gap_ms`) -> IDLE with
the sensor asleep. The sensors come from the configuration (lib/sensorconfig.py builds
them: the PM sensor, then those read once per cycle, each with its metric names). Each
sensor is read inside its own try: a failing sensor is logged and counted, its metrics are
left out, and the others still publish. After 3 cycles without a PM frame the driver is
re-initialised.
RAM: the app object and a 3-int sum.
"""

from clock import ticks_add, ticks_diff, ticks_ms
from log import log

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable, TypeVar

    from config import Config
    from device import Device
    from fwtypes import PMSensor, Ticks
    from sensorconfig import Attached

    T = TypeVar("T")

IDLE = 0
SETTLING = 1
SAMPLING = 2


class AirBox:
    def __init__(
        self,
        device: "Device",
        cfg: "Config",
        pm: "PMSensor | None" = None,
        sensors: "list[Attached] | None" = None,
        frame_gap_ms: int = 1000,
        interval_ms: "int | None" = None,
    ) -> None:
        self.device = device
        self.cfg = cfg
        self.pm = pm
        self.sensors = sensors or []
        self.frame_gap_ms = frame_gap_ms
        self.interval_ms = interval_ms  # host runs: sub-second intervals; None = config
        self.state = IDLE
        self.next_ms: "Ticks" = ticks_ms()
        self.cycle_start = self.next_ms
        self.cycles = 0
        self.pm_misses = 0
        self._sum = [0, 0, 0]
        self._got = 0
        self._tries = 0
        if pm is not None:
            self._pm_call("init", pm.passive)
            self._pm_call("sleep", pm.sleep)

    def _pm_call(self, what: str, fn: "Callable[[], T]") -> "T | None":
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one sensor must not stop the loop
            self.device.error("pm_" + what + "_failed", exc)
            return None

    def reconfigure(self) -> None:
        """Called after a remote config change: the next cycle uses the new interval."""
        self.interval_ms = None
        if self.state == IDLE:
            self.next_ms = ticks_ms()

    def tick(self) -> int:
        """Advance the cycle; return how many ms the caller may sleep."""
        now = ticks_ms()
        wait = ticks_diff(self.next_ms, now)
        if wait > 0:
            return wait
        if self.state == IDLE:
            self.cycle_start = now
            if self.pm is not None:
                self._pm_call("wake", self.pm.wake)
                self.state = SETTLING
                self.next_ms = ticks_add(now, self.cfg["settle_s"] * 1000)
            else:
                self._finish()
            return 0
        if self.state == SETTLING:
            self.state = SAMPLING
            self._sum[0] = self._sum[1] = self._sum[2] = 0
            self._got = 0
            self._tries = 0
        # SAMPLING: one frame per turn (only a box with a PM sensor gets here)
        pm = self.pm
        values = self._pm_call("read", pm.read) if pm is not None else None
        self._tries += 1
        if values is not None:
            self._sum[0] += values[0]
            self._sum[1] += values[1]
            self._sum[2] += values[2]
            self._got += 1
        frames = self.cfg["frames"]
        if self._got >= frames or self._tries >= frames * 2:
            self._finish()
            return 0
        self.next_ms = ticks_add(now, self.frame_gap_ms)
        return self.frame_gap_ms

    def _finish(self) -> None:
        m: "dict[str, int | float]" = {}
        if self.pm is not None:
            self._pm_call("sleep", self.pm.sleep)
            if self._got:
                n = self._got
                m["pm1"] = int(self._sum[0] / n + 0.5)
                m["pm25"] = int(self._sum[1] / n + 0.5)
                m["pm10"] = int(self._sum[2] / n + 0.5)
                self.pm_misses = 0
            else:
                self.pm_misses += 1
                log("pm_no_data", misses=self.pm_misses)
                if self.pm_misses % 3 == 0:
                    self._pm_call("init", self.pm.passive)
        for sensor in self.sensors:
            try:
                reading = sensor.driver.read()
                sensor.misses = 0
            except Exception as exc:  # noqa: BLE001 - one sensor must not stop the others
                sensor.misses += 1
                self.device.error(sensor.name + "_read_failed", exc)
                continue
            for metric, value in zip(sensor.metrics, reading):
                if metric and metric not in m:
                    m[metric] = round(value, 1)
        self.cycles += 1
        if m:
            self.device.record(m)
            log("reading", cycle=self.cycles, metrics=len(m))
        else:
            log("reading_empty", cycle=self.cycles)
        self.state = IDLE
        interval = self.interval_ms if self.interval_ms is not None else self.cfg["interval_s"] * 1000
        self.next_ms = ticks_add(self.cycle_start, interval)

