"""Fake hardware for host runs and tests: a PMS5003 on a UART, an SHT31, a BME280 and a QMC5883L on I2C.

The fake UART speaks the real PMS5003 protocol: it answers the passive-mode,
read and sleep/wake commands with real 32-byte frames (built by the firmware's
own `build_frame`), and can add garbage bytes or cut frames to exercise the
parser. The fake magnetometer replays a synthetic trace from magtraces.py.
Every device has `fail = True` to act like a chip that stopped answering.

`FakeBuses` is what the host runner hands lib/sensorconfig.py's builders: one fake UART and
one I2C bus holding a chip of every kind in `I2C_CHIPS`, so whichever drivers a device's
configuration names find their chip, and a new fake chip needs no edit to the runner.
"""

from __future__ import annotations

import errno
import math
import struct
import threading
from collections.abc import Callable, Iterator

from drivers import bme280, pms5003, qmc5883l, sht31


class FakePMS5003Uart:
    """A `machine.UART` with a PMS5003 behind it."""

    def __init__(self, seed: int = 1, garbage_every: int = 0, split: bool = False) -> None:
        self.rx = bytearray()
        self.awake = True
        self.passive = False
        self.requests = 0
        self.fail = False
        self.garbage_every = garbage_every
        self.split = split
        self.seed = seed
        self.commands: list[bytes] = []
        self._lock = threading.Lock()

    def values(self) -> tuple[int, int, int]:
        """A smooth made-up PM level that changes with each request."""
        k = self.requests + self.seed * 7
        pm25 = int(12 + 8 * math.sin(k / 9.0) + (k * 37 % 5))
        return (max(0, pm25 - 4), max(0, pm25), max(0, pm25 + 6))

    def write(self, data: bytes) -> int:
        with self._lock:
            self.commands.append(bytes(data))
            if len(data) == 7 and data[0] == 0x42 and data[1] == 0x4D:
                cmd, value = data[2], data[4]
                if cmd == pms5003.CMD_SLEEP:
                    self.awake = value == 1
                elif cmd == pms5003.CMD_MODE:
                    self.passive = value == 0
                elif cmd == pms5003.CMD_READ and self.awake and not self.fail:
                    self.requests += 1
                    if self.garbage_every and self.requests % self.garbage_every == 0:
                        self.rx += b"\x00\x42\xff\x42\x4d\x00"  # noise and a false start
                    self.rx += pms5003.build_frame(self.values())
        return len(data)

    def any(self) -> int:
        with self._lock:
            return len(self.rx)

    def read(self, n: int | None = None) -> bytes | None:
        with self._lock:
            if not self.rx:
                return None
            take = len(self.rx) if n is None else min(n, len(self.rx))
            if self.split:
                take = min(take, 11)
            out = bytes(self.rx[:take])
            del self.rx[:take]
            return out


class FakeSHT31:
    def __init__(self, t: float = 24.6, rh: float = 71.2) -> None:
        self.t = t
        self.rh = rh
        self.fail = False
        self.reads = 0
        self.pending = b""

    def write(self, data: bytes) -> None:
        if data == sht31.CMD_SINGLE_HIGH:
            self.reads += 1
            drift = 0.3 * math.sin(self.reads / 5.0)
            self.pending = sht31.encode_measurement(self.t + drift, self.rh - 2 * drift)

    def read(self, n: int) -> bytes:
        return self.pending[:n]


class FakeBME280:
    """Registers of a BME280 with the datasheet's worked-example calibration (BMP280 section 3.12 for
    T and P): the raw sample reads 25.08 degC, 1006.5 hPa and 32.7 % RH."""

    CAL_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
    CAL_H = (75, 362, 0, 313, 50, 30)
    RAW = (415148, 519888, 26000)  # adc_p, adc_t, adc_h

    def __init__(self) -> None:
        self.fail = False
        self.reads = 0
        h1, h2, h3, h4, h5, h6 = self.CAL_H
        block1 = bytearray(26)
        struct.pack_into("<HhhHhhhhhhhh", block1, 0, *self.CAL_TP)
        block1[25] = h1
        block2 = bytearray(7)
        struct.pack_into("<hB", block2, 0, h2, h3)
        block2[3], block2[4], block2[5], block2[6] = h4 >> 4, ((h5 & 0x0F) << 4) | (h4 & 0x0F), h5 >> 4, h6 & 0xFF
        adc_p, adc_t, adc_h = self.RAW
        data = bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                      adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4, adc_h >> 8, adc_h & 0xFF])
        self.registers = {bme280.REG_ID: bytes([bme280.CHIP_ID]), bme280.REG_CALIB00: bytes(block1),
                          bme280.REG_CALIB26: bytes(block2), bme280.REG_DATA: data}

    def write_mem(self, reg: int, data: bytes) -> None:
        if reg == bme280.REG_CTRL_MEAS:
            self.reads += 1

    def read_mem(self, reg: int, n: int) -> bytes:
        return self.registers.get(reg, bytes(n))[:n]


class FakeQMC5883L:
    """Register reads replay (x, y, z) samples in uT from an iterator (looping)."""

    def __init__(self, samples: Iterator[tuple[float, float, float]] | None = None, temp_c: float = 21.5) -> None:
        self.samples = samples
        self.temp_c = temp_c
        self.fail = False
        self.registers: dict[int, int] = {}

    def write_mem(self, reg: int, data: bytes) -> None:
        self.registers[reg] = data[0]

    def read_mem(self, reg: int, n: int) -> bytes:
        if reg == qmc5883l.REG_DATA:
            x, y, z = (18.0, -4.0, 42.0)
            if self.samples is not None:
                try:
                    x, y, z = next(self.samples)
                except StopIteration:
                    self.samples = None
            rng = self.registers.get(qmc5883l.REG_CTRL1, 0) & 0x30
            sample: bytes = qmc5883l.encode_sample(x, y, z, self.temp_c, rng)
            return sample[:n]
        if reg == qmc5883l.REG_CHIP_ID:
            return b"\xff"[:n]
        return bytes(n)


class FakeI2C:
    """A `machine.I2C` bus with fake chips at their addresses."""

    def __init__(self, devices: dict[int, object]) -> None:
        self.devices = devices

    def _dev(self, addr: int) -> object:
        dev = self.devices.get(addr)
        if dev is None or getattr(dev, "fail", False):
            raise OSError(errno.ENODEV, f"no ACK from I2C address 0x{addr:02x}")
        return dev

    def scan(self) -> list[int]:
        return sorted(self.devices)

    def writeto(self, addr: int, data: bytes) -> int:
        self._dev(addr).write(bytes(data))  # type: ignore[attr-defined]
        return 1

    def readfrom_into(self, addr: int, buf: bytearray) -> None:
        data = self._dev(addr).read(len(buf))  # type: ignore[attr-defined]
        buf[: len(data)] = data

    def writeto_mem(self, addr: int, reg: int, data: bytes) -> None:
        self._dev(addr).write_mem(reg, bytes(data))  # type: ignore[attr-defined]

    def readfrom_mem(self, addr: int, reg: int, n: int) -> bytes:
        return bytes(self._dev(addr).read_mem(reg, n))  # type: ignore[attr-defined]

    def readfrom_mem_into(self, addr: int, reg: int, buf: bytearray) -> None:
        data = self.readfrom_mem(addr, reg, len(buf))
        buf[: len(data)] = data


I2C_CHIPS: dict[int, Callable[[], object]] = {
    sht31.ADDRESS: FakeSHT31,
    bme280.ADDRESS: FakeBME280,
}
"""Every fake I2C chip of an air box, by its bus address: a host box's bus holds one of each."""


class FakeBuses:
    """The buses of a host air box (fwtypes.Buses): a PMS5003 on the UART and every chip of I2C_CHIPS on I2C."""

    def __init__(self, seed: int = 1, garbage_every: int = 0) -> None:
        self.uart_port = FakePMS5003Uart(seed=seed, garbage_every=garbage_every)
        self.chips: dict[int, object] = {address: make() for address, make in I2C_CHIPS.items()}
        self.bus = FakeI2C(self.chips)

    def i2c(self) -> FakeI2C:
        return self.bus

    def uart(self) -> FakePMS5003Uart:
        return self.uart_port

    def set_pin(self) -> None:
        return None
