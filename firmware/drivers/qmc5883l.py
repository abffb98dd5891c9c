"""QST QMC5883L 3-axis magnetometer over I2C: sample parsing, unit conversion, driver.

Data registers 0x00..0x05 are X, Y, Z as int16 little endian; 0x06 is status
(bit0 DRDY, bit1 OVL overflow, bit2 DOR data skipped); 0x07..0x08 the
temperature (int16 LE, 100 LSB/degC, offset uncalibrated). Pure parsing plus a
thin class. RAM: a 9-byte buffer. Refuses (returns None for) an overflowed sample.
"""

import struct

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from fwtypes import Buffer, I2CBus

ADDRESS = 0x0D
REG_DATA = 0x00
REG_STATUS = 0x06
REG_CTRL1 = 0x09
REG_CTRL2 = 0x0A
REG_SET_RESET = 0x0B
REG_CHIP_ID = 0x0D

MODE_CONTINUOUS = 0x01
ODR_10HZ = 0x00
ODR_50HZ = 0x04
RNG_2G = 0x00
RNG_8G = 0x10
OSR_512 = 0x00

# LSB per gauss for each range; 1 gauss = 100 uT.
LSB_PER_GAUSS = {RNG_2G: 12000, RNG_8G: 3000}

STATUS_DRDY = 0x01
STATUS_OVL = 0x02
STATUS_DOR = 0x04


class QMC5883LError(Exception):
    pass


def parse_sample(buf: "Buffer") -> "tuple[int, int, int, int]":
    """Return (x, y, z, status) raw counts from the 7 bytes starting at register 0x00."""
    x, y, z = struct.unpack_from("<hhh", buf, 0)
    return x, y, z, buf[6]


def parse_temperature(buf: "Buffer") -> float:
    """Return the relative temperature in degC from bytes 7..8 of a 9-byte read."""
    raw: int = struct.unpack_from("<h", buf, 7)[0]
    return raw / 100.0


def to_microtesla(raw: int, rng: int = RNG_2G) -> float:
    return raw * 100.0 / LSB_PER_GAUSS[rng]


def from_microtesla(ut: float, rng: int = RNG_2G) -> int:
    """Counts for a field in uT, clamped to int16 (for tests and fakes)."""
    v = int(round(ut * LSB_PER_GAUSS[rng] / 100.0))
    return max(-32768, min(32767, v))


def encode_sample(
    x_ut: float, y_ut: float, z_ut: float, temp_c: float = 25.0, rng: int = RNG_2G, status: int = STATUS_DRDY
) -> bytes:
    """Inverse of parsing: the 9 register bytes for a field in uT (tests, fakes)."""
    out = bytearray(9)
    struct.pack_into(
        "<hhh", out, 0, from_microtesla(x_ut, rng), from_microtesla(y_ut, rng), from_microtesla(z_ut, rng)
    )
    out[6] = status
    struct.pack_into("<h", out, 7, int(round(temp_c * 100)))
    return bytes(out)


def control1(mode: int = MODE_CONTINUOUS, odr: int = ODR_10HZ, rng: int = RNG_8G, osr: int = OSR_512) -> int:
    return osr | rng | odr | mode


class QMC5883L:
    """Continuous mode. read() returns (x, y, z) in uT and the temperature, or None."""

    def __init__(self, i2c: "I2CBus", address: int = ADDRESS, rng: int = RNG_8G, odr: int = ODR_10HZ) -> None:
        self.i2c = i2c
        self.address = address
        self.rng = rng
        self.buf = bytearray(9)
        self.overflows = 0
        self.init(odr)

    def init(self, odr: int = ODR_10HZ) -> None:
        self.i2c.writeto_mem(self.address, REG_CTRL2, b"\x80")  # soft reset
        self.i2c.writeto_mem(self.address, REG_SET_RESET, b"\x01")
        self.i2c.writeto_mem(self.address, REG_CTRL1, bytes([control1(odr=odr, rng=self.rng)]))

    def read(self) -> "tuple[tuple[float, float, float], float] | None":
        self.i2c.readfrom_mem_into(self.address, REG_DATA, self.buf)
        x, y, z, status = parse_sample(self.buf)
        if status & STATUS_OVL:
            self.overflows += 1
            return None
        rng = self.rng
        return (to_microtesla(x, rng), to_microtesla(y, rng), to_microtesla(z, rng)), parse_temperature(self.buf)
