"""SHT31, BME280 and QMC5883L byte parsing (runs on CPython and MicroPython)."""

from drivers import bme280, qmc5883l, sht31
from fwtest_support import raises

# --- SHT31 -----------------------------------------------------------------

# 0x6667 -> 25.0 degC ... measured bytes with their CRCs.
SHT31_GOOD = bytes([0x66, 0x67, 0xA2, 0x80, 0x00, 0xA2])


def test_sht31_crc8_matches_the_datasheet_example():
    assert sht31.crc8(b"\xbe\xef") == 0x92


def test_sht31_converts_a_good_measurement():
    t, rh = sht31.parse_measurement(SHT31_GOOD)
    assert abs(t - 25.0) < 0.01
    assert abs(rh - 50.0) < 0.01


def test_sht31_rejects_a_bad_temperature_crc():
    bad = bytearray(SHT31_GOOD)
    bad[2] ^= 0xFF
    exc = raises(sht31.SHT31Error, sht31.parse_measurement, bytes(bad))
    assert "temperature" in str(exc)


def test_sht31_rejects_a_bad_humidity_crc():
    bad = bytearray(SHT31_GOOD)
    bad[4] ^= 0x01
    exc = raises(sht31.SHT31Error, sht31.parse_measurement, bytes(bad))
    assert "humidity" in str(exc)


def test_sht31_rejects_a_truncated_read():
    exc = raises(sht31.SHT31Error, sht31.parse_measurement, SHT31_GOOD[:4])
    assert "short" in str(exc)


def test_sht31_encode_round_trips():
    t, rh = sht31.parse_measurement(sht31.encode_measurement(-12.3, 88.8))
    assert abs(t + 12.3) < 0.01 and abs(rh - 88.8) < 0.01


# --- BME280 ----------------------------------------------------------------

# The Bosch BMP280 datasheet worked example (section 3.12): same T/P formulas.
CAL_T = (27504, 26435, -1000)
CAL_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
CAL_H = (75, 362, 0, 313, 50, 30)
CAL = CAL_T + CAL_P + CAL_H


def test_bme280_temperature_matches_the_datasheet_example():
    t_fine, t = bme280.compensate_t(CAL, 519888)
    assert t == 2508
    assert t_fine == 128422


def test_bme280_pressure_matches_the_datasheet_example():
    t_fine, _ = bme280.compensate_t(CAL, 519888)
    p = bme280.compensate_p(CAL, 415148, t_fine)
    assert abs(p / 256.0 - 100653.27) < 0.5


def _float_humidity(cal, adc_h, t_fine):
    """The datasheet's double-precision humidity formula (section 8.1), for cross-checking."""
    h1, h2, h3, h4, h5, h6 = cal[12:18]
    v = t_fine - 76800.0
    v = (adc_h - (h4 * 64.0 + h5 / 16384.0 * v)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * v * (1.0 + h3 / 67108864.0 * v))
    )
    v = v * (1.0 - h1 * v / 524288.0)
    return max(0.0, min(100.0, v))


def test_bme280_integer_humidity_agrees_with_the_float_formula():
    t_fine, _ = bme280.compensate_t(CAL, 519888)
    for adc_h in (20000, 26000, 30000, 34000):
        exact = bme280.compensate_h(CAL, adc_h, t_fine) / 1024.0
        assert abs(exact - _float_humidity(CAL, adc_h, t_fine)) < 0.2, adc_h


def test_bme280_parses_calibration_registers():
    import struct

    block1 = bytearray(26)
    struct.pack_into("<HhhHhhhhhhhh", block1, 0, *(CAL_T + CAL_P))
    block1[25] = 75
    # H2=362, H3=0, H4=313 (0x139: E4=0x13, E5 low=0x9), H5=50 (0x032: E5 high=0x2, E6=0x03), H6=30
    block2 = bytes([0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E])
    assert bme280.parse_calibration(block1, block2) == CAL


def test_bme280_parses_raw_data_bytes():
    data = bytes([0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x6E, 0x8F])
    assert bme280.parse_raw(data) == (415148, 519888, 28303)


# --- QMC5883L ----------------------------------------------------------------


def test_qmc5883l_parses_little_endian_axes_and_status():
    buf = bytes([0x10, 0x27, 0xF0, 0xD8, 0x00, 0x00, 0x01, 0xD0, 0x07])
    x, y, z, status = qmc5883l.parse_sample(buf)
    assert (x, y, z) == (10000, -10000, 0)
    assert status & qmc5883l.STATUS_DRDY
    assert qmc5883l.parse_temperature(buf) == 20.0


def test_qmc5883l_converts_counts_to_microtesla():
    assert qmc5883l.to_microtesla(12000, qmc5883l.RNG_2G) == 100.0
    assert qmc5883l.to_microtesla(3000, qmc5883l.RNG_8G) == 100.0


def test_qmc5883l_sample_encoding_round_trips():
    buf = qmc5883l.encode_sample(18.0, -4.5, 42.25, 21.5, qmc5883l.RNG_8G)
    x, _, z, _ = qmc5883l.parse_sample(buf)
    assert abs(qmc5883l.to_microtesla(x, qmc5883l.RNG_8G) - 18.0) < 0.05
    assert abs(qmc5883l.to_microtesla(z, qmc5883l.RNG_8G) - 42.25) < 0.05


class _Bus:
    def __init__(self, data):
        self.data = data
        self.writes = []

    def writeto_mem(self, addr, reg, data):
        self.writes.append((reg, bytes(data)))

    def readfrom_mem_into(self, addr, reg, buf):
        buf[:] = self.data


def test_qmc5883l_driver_refuses_an_overflowed_sample():
    sample = bytearray(qmc5883l.encode_sample(1.0, 2.0, 3.0))
    sample[6] |= qmc5883l.STATUS_OVL
    chip = qmc5883l.QMC5883L(_Bus(bytes(sample)))
    assert chip.read() is None
    assert chip.overflows == 1


def test_qmc5883l_driver_configures_continuous_mode():
    bus = _Bus(qmc5883l.encode_sample(1.0, 2.0, 3.0, rng=qmc5883l.RNG_8G))
    chip = qmc5883l.QMC5883L(bus)
    assert (qmc5883l.REG_CTRL1, bytes([0x11])) in bus.writes
    (_, y, _), temp = chip.read()
    assert abs(y - 2.0) < 0.05 and temp == 25.0
