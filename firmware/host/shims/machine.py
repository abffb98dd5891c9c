"""Host stand-in for MicroPython's `machine` module (only what the firmware touches).

The host runner builds fake chips (firmware/host/fakehw.py) and hands them to the
application directly. For running firmware/main.py itself, `UART(id)` and
`I2C(id)` return the fakes registered in `uarts` and `i2c_buses`.
"""

from __future__ import annotations

uarts: dict[int, object] = {}
i2c_buses: dict[int, object] = {}

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


class HostReset(Exception):
    """Raised by reset(): on the host a reset ends the device's thread."""


class WDT:
    def __init__(self, id: int = 0, timeout: int = 5000) -> None:  # noqa: A002 - MicroPython's signature
        self.timeout = timeout
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, id: int, mode: int = IN) -> None:  # noqa: A002 - MicroPython's signature
        self.id = id
        self.mode = mode
        self._value = 0

    def value(self, v: int | None = None) -> int:
        if v is not None:
            self._value = v
        return self._value


def UART(id: int, baudrate: int = 9600, **kwargs: object) -> object:  # noqa: A002
    """The fake registered for this UART id (KeyError names what is missing)."""
    return uarts[id]


def I2C(id: int, **kwargs: object) -> object:  # noqa: A002
    return i2c_buses[id]


def reset_cause() -> int:
    return PWRON_RESET


def reset() -> None:
    raise HostReset("machine.reset() called")


def unique_id() -> bytes:
    return b"\x00host\x00"
