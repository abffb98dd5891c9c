"""Sensirion SHT31 temperature/humidity over I2C: CRC-8 check, conversion, driver.

Parsing is pure. A measurement is 6 bytes: T msb, T lsb, CRC, RH msb, RH lsb,
CRC; CRC-8 polynomial 0x31, init 0xFF (datasheet 4.12; crc8(0xBE, 0xEF) = 0x92).
RAM: a 6-byte buffer. Refuses a reading whose CRC does not match.
"""

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from fwtypes import Buffer, I2CBus, SleepMs

ADDRESS = 0x44
CMD_SINGLE_HIGH = b"\x24\x00"  # single shot, high repeatability, no clock stretching
CMD_SOFT_RESET = b"\x30\xa2"


class SHT31Error(Exception):
    pass


def crc8(data: "Buffer", start: int = 0, end: "int | None" = None) -> int:
    if end is None:
        end = len(data)
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 0x80:
                crc = ((crc << 1) ^ 0x31) & 0xFF
            else:
                crc = (crc << 1) & 0xFF
    return crc


def parse_measurement(buf: "Buffer") -> "tuple[float, float]":
    """Return (t_celsius, rh_percent) from the 6 bytes; raise SHT31Error on a bad CRC."""
    if len(buf) < 6:
        raise SHT31Error("short read: %d of 6 bytes" % len(buf))
    if crc8(buf, 0, 2) != buf[2]:
        raise SHT31Error("temperature CRC mismatch")
    if crc8(buf, 3, 5) != buf[5]:
        raise SHT31Error("humidity CRC mismatch")
    raw_t = buf[0] << 8 | buf[1]
    raw_rh = buf[3] << 8 | buf[4]
    t = -45.0 + 175.0 * raw_t / 65535.0
    rh = 100.0 * raw_rh / 65535.0
    if rh > 100.0:
        rh = 100.0
    return t, rh


def encode_measurement(t: float, rh: float) -> bytes:
    """Inverse of parse_measurement (for tests and the host's fake chip)."""
    raw_t = int(round((t + 45.0) * 65535.0 / 175.0))
    raw_rh = int(round(rh * 65535.0 / 100.0))
    out = bytearray(6)
    out[0] = raw_t >> 8
    out[1] = raw_t & 0xFF
    out[2] = crc8(out, 0, 2)
    out[3] = raw_rh >> 8
    out[4] = raw_rh & 0xFF
    out[5] = crc8(out, 3, 5)
    return bytes(out)


class SHT31:
    def __init__(self, i2c: "I2CBus", sleep_ms: "SleepMs", address: int = ADDRESS) -> None:
        self.i2c = i2c
        self.sleep_ms = sleep_ms
        self.address = address
        self.buf = bytearray(6)

    def read(self) -> "tuple[float, float]":
        """Return (t, rh); raise SHT31Error or OSError when the chip does not answer."""
        self.i2c.writeto(self.address, CMD_SINGLE_HIGH)
        self.sleep_ms(16)
        self.i2c.readfrom_into(self.address, self.buf)
        return parse_measurement(self.buf)
