"""Bosch BME280 pressure/temperature/humidity over I2C: datasheet compensation.

The compensation is the datasheet's integer code (section 4.2.3: 32-bit T and
H, 64-bit P) written with Python integers, so it is exact on boards whose
floats are single precision (ESP32, RP2040). Pure functions plus a thin class.
RAM: the calibration tuple (18 ints) and an 8-byte buffer.
"""

import struct

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from fwtypes import Buffer, I2CBus, SleepMs

    Calibration = tuple[int, ...]  # T1..T3, P1..P9, H1..H6

ADDRESS = 0x76
CHIP_ID = 0x60
REG_ID = 0xD0
REG_CALIB00 = 0x88  # 26 bytes: T1..T3, P1..P9, (0xA0 unused), H1
REG_CALIB26 = 0xE1  # 7 bytes: H2..H6
REG_CTRL_HUM = 0xF2
REG_CTRL_MEAS = 0xF4
REG_DATA = 0xF7  # 8 bytes: press[3], temp[3], hum[2]


class BME280Error(Exception):
    pass


def _tdiv(a: int, b: int) -> int:
    """C-style integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def parse_calibration(block1: "Buffer", block2: "Buffer") -> "Calibration":
    """Return the calibration tuple (T1..T3, P1..P9, H1..H6) from the two register blocks."""
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack_from("<HhhHhhhhhhhh", block1, 0)
    h1 = block1[25]
    h2 = struct.unpack_from("<h", block2, 0)[0]
    h3 = block2[2]
    e4, e5, e6 = block2[3], block2[4], block2[5]
    h4 = (e4 << 4) | (e5 & 0x0F)
    if h4 & 0x800:
        h4 -= 0x1000
    h5 = (e6 << 4) | (e5 >> 4)
    if h5 & 0x800:
        h5 -= 0x1000
    h6 = block2[6]
    if h6 > 127:
        h6 -= 256
    return (t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)


def parse_raw(data: "Buffer") -> "tuple[int, int, int]":
    """Return (adc_p, adc_t, adc_h) from the 8 data bytes."""
    adc_p = (data[0] << 12) | (data[1] << 4) | (data[2] >> 4)
    adc_t = (data[3] << 12) | (data[4] << 4) | (data[5] >> 4)
    adc_h = (data[6] << 8) | data[7]
    return adc_p, adc_t, adc_h


def compensate_t(cal: "Calibration", adc_t: int) -> "tuple[int, int]":
    """Return (t_fine, temperature in 0.01 degC)."""
    t1, t2, t3 = cal[0], cal[1], cal[2]
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    return t_fine, (t_fine * 5 + 128) >> 8


def compensate_p(cal: "Calibration", adc_p: int, t_fine: int) -> int:
    """Return pressure in Pa as Q24.8 (divide by 256), or 0 if undefined."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal[3:12]
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6
    var2 = var2 + ((var1 * p5) << 17)
    var2 = var2 + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _tdiv(((p << 31) - var2) * 3125, var1)
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (p7 << 4)


def compensate_h(cal: "Calibration", adc_h: int, t_fine: int) -> int:
    """Return relative humidity in %RH as Q22.10 (divide by 1024)."""
    h1, h2, h3, h4, h5, h6 = cal[12:18]
    v = t_fine - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    if v < 0:
        v = 0
    if v > 419430400:
        v = 419430400
    return v >> 12


def compensate(cal: "Calibration", adc_p: int, adc_t: int, adc_h: int) -> "tuple[float, float, float]":
    """Return (t degC, p hPa, rh %) as floats."""
    t_fine, t = compensate_t(cal, adc_t)
    p = compensate_p(cal, adc_p, t_fine)
    h = compensate_h(cal, adc_h, t_fine)
    return t / 100.0, p / 25600.0, h / 1024.0


class BME280:
    """Forced-mode reads, oversampling x1 for T, P and H."""

    def __init__(self, i2c: "I2CBus", sleep_ms: "SleepMs", address: int = ADDRESS) -> None:
        self.i2c = i2c
        self.sleep_ms = sleep_ms
        self.address = address
        chip = i2c.readfrom_mem(address, REG_ID, 1)[0]
        if chip != CHIP_ID:
            raise BME280Error("chip id 0x%02x is not a BME280 (0x60)" % chip)
        self.cal = parse_calibration(
            i2c.readfrom_mem(address, REG_CALIB00, 26), i2c.readfrom_mem(address, REG_CALIB26, 7)
        )
        self.buf = bytearray(8)

    def read(self) -> "tuple[float, float, float]":
        self.i2c.writeto_mem(self.address, REG_CTRL_HUM, b"\x01")
        self.i2c.writeto_mem(self.address, REG_CTRL_MEAS, b"\x25")  # T x1, P x1, forced
        self.sleep_ms(10)
        self.i2c.readfrom_mem_into(self.address, REG_DATA, self.buf)
        adc_p, adc_t, adc_h = parse_raw(self.buf)
        return compensate(self.cal, adc_p, adc_t, adc_h)
