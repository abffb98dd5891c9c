"""Fake LED hardware for host runs and tests: `machine.PWM` channels and a `neopixel.NeoPixel` chain.

Each fake keeps what a person standing at the LED would see: `FakeRGBLed.colour()` turns the
three duties back into (r, g, b) for a common-cathode or common-anode wiring, and
`FakeNeoPixel.shown` is the pixel data of the last write() (not what was set but not yet written).
"""

from __future__ import annotations

import threading


class FakePWM:
    """One `machine.PWM` channel: the last duty set (0..65535)."""

    def __init__(self) -> None:
        self.duty = 0
        self.writes = 0

    def duty_u16(self, value: int, /) -> None:
        if not 0 <= value <= 65535:
            raise ValueError(f"duty {value} outside 0..65535")
        self.duty = value
        self.writes += 1


class FakeRGBLed:
    """An RGB LED on three fake PWM pins; `common_anode` says how it is wired."""

    def __init__(self, common_anode: bool = False) -> None:
        self.common_anode = common_anode
        self.red, self.green, self.blue = FakePWM(), FakePWM(), FakePWM()

    def colour(self) -> tuple[int, int, int]:
        """The colour the LED shows now (each leg's brightness, 0..255)."""
        def level(pwm: FakePWM) -> int:
            lit = 65535 - pwm.duty if self.common_anode else pwm.duty
            return round(lit / 257)

        return (level(self.red), level(self.green), level(self.blue))


class FakeNeoPixel:
    """A `neopixel.NeoPixel` of `n` pixels."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pixels: list[tuple[int, int, int]] = [(0, 0, 0)] * n
        self.shown: list[tuple[int, int, int]] = [(0, 0, 0)] * n
        self.writes = 0
        self._lock = threading.Lock()

    def __setitem__(self, index: int, colour: tuple[int, int, int], /) -> None:
        if any(not 0 <= c <= 255 for c in colour):
            raise ValueError(f"pixel {colour} outside 0..255")
        self.pixels[index] = colour

    def __len__(self) -> int:
        return self.n

    def write(self) -> None:
        with self._lock:
            self.shown = list(self.pixels)
            self.writes += 1
