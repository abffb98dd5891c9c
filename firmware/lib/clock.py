"""Time for the firmware: millisecond ticks and Unix seconds once NTP has synced.

`unix()` returns 0 until the clock is trusted (an NTP sync succeeded, or the RTC
already holds a plausible date), so payloads carry `ts: 0` rather than a wrong
time. Converts the MicroPython 2000 epoch (ESP32, RP2) to the Unix epoch.
Falls back to CPython's time module so the same code runs on the host.
"""

import time

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    # mypy checks the firmware against MicroPython's time (firmware/mypy-device.ini); the
    # CPython fallback below exists for the host runner and tests only.
    from time import sleep_ms as sleep_ms
    from time import ticks_add as ticks_add
    from time import ticks_diff as ticks_diff
    from time import ticks_ms as ticks_ms

    from fwtypes import NTPModule, Ticks
else:
    try:
        ticks_ms = time.ticks_ms
        ticks_diff = time.ticks_diff
        ticks_add = time.ticks_add
        sleep_ms = time.sleep_ms
    except AttributeError:  # CPython (host runner, tests)

        def ticks_ms():
            return int(time.monotonic() * 1000)

        def ticks_diff(a, b):
            return a - b

        def ticks_add(a, b):
            return a + b

        def sleep_ms(ms):
            time.sleep(ms / 1000.0)


EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
PLAUSIBLE_AFTER = 1735689600  # 2025-01-01: an RTC showing a later date was set by someone


class Clock:
    """NTP-synced wall clock. `ntp` is the `ntptime` module (or a fake)."""

    def __init__(self, ntp: "NTPModule | None" = None, host: "str | None" = None) -> None:
        self.ntp = ntp
        self.host = host
        self.synced = False
        self.last_sync_ms: "Ticks | None" = None
        self.last_try_ms: "Ticks | None" = None

    def sync(self) -> bool:
        """Try one NTP sync; return True on success. Never raises."""
        if self.ntp is None:
            return False
        self.last_try_ms = ticks_ms()
        try:
            if self.host:
                self.ntp.host = self.host
            self.ntp.settime()
        except Exception as exc:  # noqa: BLE001 - network errors vary by port
            from log import log

            log("ntp_failed", reason=repr(exc))
            return False
        self.synced = True
        self.last_sync_ms = ticks_ms()
        return True

    def due_for_sync(self, every_ms: int = 6 * 3600 * 1000, retry_ms: int = 60000) -> bool:
        if self.ntp is None:
            return False
        now = ticks_ms()
        if self.last_try_ms is not None and ticks_diff(now, self.last_try_ms) < retry_ms:
            return False
        return self.last_sync_ms is None or ticks_diff(now, self.last_sync_ms) >= every_ms

    def unix(self) -> int:
        now = int(time.time()) + EPOCH_OFFSET
        if self.synced or now >= PLAUSIBLE_AFTER:
            return now
        return 0
