"""The parking sensor: sample the magnetometer, detect vehicles, publish changes and heartbeats.

Every `sample_ms` one magnetometer read feeds the detector. A change of
occupancy is published at once (`ev: change`); a `heartbeat` with battery,
temperature and baseline goes out every `heartbeat_every_s`; `boot` once the
baseline is known. The baseline is saved on flash so a reboot with a car on
the bay still reports it correctly. A failing read is logged and skipped.
RAM: the detector (~15 numbers) and the app object.
"""

import json

from clock import ticks_add, ticks_diff, ticks_ms
from log import log

from parking.detector import make_detector

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any, Callable

    from config import Config
    from device import Device
    from fwtypes import Magnetometer, Ticks


class ParkingSensor:
    def __init__(
        self,
        device: "Device",
        cfg: "Config",
        mag: "Magnetometer",
        battery_mv: "Callable[[], int] | None" = None,
        baseline_path: str = "baseline.json",
        tick_ms: "int | None" = None,
    ) -> None:
        self.device = device
        self.cfg = cfg
        self.mag = mag
        self.battery_mv = battery_mv
        self.baseline_path = baseline_path
        self.tick_ms = tick_ms  # host runs replay traces faster than sample_ms
        self.detector = self._new_detector()
        self.next_ms: "Ticks" = ticks_ms()
        self.last_heartbeat_ms = ticks_ms()
        self.cycles = 0
        self.misses = 0
        self.temp: "float | None" = None
        self.field = 0.0
        self.booted = False
        self._load_baseline()

    def _new_detector(self) -> "Any":  # parking.detector is not type-checked yet: see firmware/mypy-device.ini
        c = self.cfg
        return make_detector(
            c["sample_ms"], c["th_high_ut"], c["th_low_ut"], c["debounce"], c["learn_samples"], c["baseline_alpha"]
        )

    def reconfigure(self) -> None:
        """New thresholds from the server: keep the learnt baseline and state."""
        old = self.detector
        self.detector = self._new_detector()
        if old.state != 0:
            self.detector.set_baseline(old.base[0], old.base[1], old.base[2])
            self.detector.state = old.state
            self.detector.car = old.car

    def _load_baseline(self) -> None:
        try:
            with open(self.baseline_path) as f:
                b = json.load(f)
            self.detector.set_baseline(float(b[0]), float(b[1]), float(b[2]))
            log("baseline_loaded", x=b[0], y=b[1], z=b[2])
        except OSError:
            pass
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            log("baseline_file_corrupt", reason=repr(exc))

    def _save_baseline(self) -> None:
        try:
            with open(self.baseline_path, "w") as f:
                json.dump([round(v, 2) for v in self.detector.base], f)
        except OSError as exc:
            self.device.error("baseline_save_failed", exc)

    def _metrics(self, heartbeat: bool = False) -> "dict[str, int | float]":
        m: "dict[str, int | float]" = {"occupied": self.detector.occupied, "mag": round(self.detector.deviation, 1)}
        if self.battery_mv is not None:
            try:
                m["batt_mv"] = int(self.battery_mv())
            except Exception as exc:  # noqa: BLE001
                self.device.error("battery_read_failed", exc)
        if self.temp is not None:
            m["t"] = round(self.temp, 1)
        if heartbeat:
            b = self.detector.base
            m["mag_base"] = round((b[0] * b[0] + b[1] * b[1] + b[2] * b[2]) ** 0.5, 1)
        return m

    def tick(self) -> int:
        now = ticks_ms()
        wait = ticks_diff(self.next_ms, now)
        if wait > 0:
            return wait
        period = self.tick_ms if self.tick_ms is not None else self.cfg["sample_ms"]
        self.next_ms = ticks_add(now, period)
        self.cycles += 1
        try:
            got = self.mag.read()
        except Exception as exc:  # noqa: BLE001
            got = None
            self.device.error("mag_read_failed", exc)
        if got is None:
            self.misses += 1
        else:
            (x, y, z), self.temp = got
            self.field = (x * x + y * y + z * z) ** 0.5
            learning = self.detector.state == 0
            if self.detector.update(x, y, z):
                if learning:
                    self._save_baseline()
                    log("baseline_learnt")
                else:
                    log("parking_change", occupied=self.detector.occupied, dev=round(self.detector.deviation, 1))
                    self.device.record(self._metrics(), "change")
            if not self.booted and self.detector.state != 0:
                self.booted = True
                self.device.record(self._metrics(), "boot")
        if ticks_diff(now, self.last_heartbeat_ms) >= self.cfg["heartbeat_every_s"] * 1000:
            self.last_heartbeat_ms = now
            self.device.record(self._metrics(heartbeat=True), "heartbeat")
            if self.detector.state == 1:
                self._save_baseline()
        return period
