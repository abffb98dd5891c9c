"""Hardware watchdog and the cause of the last reset.

`Watchdog(machine, timeout_ms)` wraps machine.WDT; timeout 0 disables it (for
the host and tests). RP2040 caps the timeout at 8388 ms, so the main loop must
feed at least every few seconds and blocking calls are kept short.
"""

from log import log

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from fwtypes import MachineModule, WDTHandle

RP2_MAX_MS = 8388


class Watchdog:
    def __init__(self, machine: "MachineModule | None", timeout_ms: int) -> None:
        self.wdt: "WDTHandle | None" = None
        if not timeout_ms or machine is None:
            return
        try:
            import sys

            if sys.platform == "rp2":
                timeout_ms = min(timeout_ms, RP2_MAX_MS)
            self.wdt = machine.WDT(timeout=timeout_ms)
        except Exception as exc:  # noqa: BLE001
            log("watchdog_unavailable", reason=repr(exc))

    def feed(self) -> None:
        if self.wdt is not None:
            self.wdt.feed()


def reset_cause(machine: "MachineModule | None") -> str:
    """A short name for machine.reset_cause(): power_on, hard, wdt, deepsleep, soft, unknown."""
    if machine is None:
        return "unknown"
    try:
        cause = machine.reset_cause()
    except Exception:  # noqa: BLE001
        return "unknown"
    for name, attr in (
        ("power_on", "PWRON_RESET"),
        ("hard", "HARD_RESET"),
        ("wdt", "WDT_RESET"),
        ("deepsleep", "DEEPSLEEP_RESET"),
        ("soft", "SOFT_RESET"),
    ):
        if getattr(machine, attr, None) == cause:
            return name
    return "unknown"
