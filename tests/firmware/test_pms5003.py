"""PMS5003 / PMS3003 frame parsing on real frame bytes (runs on CPython and MicroPython)."""

from drivers import pms5003
from fwtest_support import raises  # noqa: F401

# A complete PMS5003 frame, byte by byte as on the wire (datasheet layout;
# atm PM1=8, PM2.5=12, PM10=17; particle counts; version 0x97; checksum 0x037C).
REAL_FRAME = bytes(
    [
        0x42,
        0x4D,
        0x00,
        0x1C,
        0x00,
        0x09,
        0x00,
        0x0D,
        0x00,
        0x12,
        0x00,
        0x08,
        0x00,
        0x0C,
        0x00,
        0x11,
        0x05,
        0xDC,
        0x01,
        0xB8,
        0x00,
        0x4B,
        0x00,
        0x06,
        0x00,
        0x02,
        0x00,
        0x00,
        0x97,
        0x00,
        0x03,
        0x7C,
    ]
)


def test_pms5003_parses_a_real_frame():
    assert pms5003.frame_status(REAL_FRAME, 0, len(REAL_FRAME), 32) == "ok"
    assert pms5003.parse_frame(REAL_FRAME) == (8, 12, 17)
    assert pms5003.parse_frame_cf1(REAL_FRAME) == (9, 13, 18)


def test_pms5003_build_frame_matches_the_real_frame_bytes():
    built = pms5003.build_frame((8, 12, 17), (9, 13, 18), (1500, 440, 75, 6, 2, 0))
    assert built == REAL_FRAME


def test_pms5003_rejects_a_bad_checksum():
    bad = bytearray(REAL_FRAME)
    bad[13] ^= 0x01
    assert pms5003.frame_status(bad, 0, 32, 32) == "checksum"
    scanner = pms5003.FrameScanner()
    assert scanner.feed(bytes(bad)) is None
    assert scanner.bad_checksum == 1


def test_pms5003_waits_for_the_rest_of_a_truncated_frame():
    scanner = pms5003.FrameScanner()
    assert scanner.feed(REAL_FRAME[:20]) is None
    assert scanner.feed(REAL_FRAME[20:]) == (8, 12, 17)


def test_pms5003_drops_a_truncated_frame_followed_by_a_good_one():
    scanner = pms5003.FrameScanner()
    assert scanner.feed(REAL_FRAME[:17] + REAL_FRAME) == (8, 12, 17)
    assert scanner.frames == 1


def test_pms5003_resyncs_after_garbage():
    scanner = pms5003.FrameScanner()
    garbage = b"\x00\xff\x42\x13\x4d\x42\x42\x4d\x00"
    assert scanner.feed(garbage + REAL_FRAME) == (8, 12, 17)
    assert scanner.garbage >= len(garbage) - 1


def test_pms5003_finds_frames_fed_one_byte_at_a_time():
    scanner = pms5003.FrameScanner()
    found = []
    for b in b"\x11\x42" + REAL_FRAME + REAL_FRAME:
        got = scanner.feed(bytes([b]))
        if got is not None:
            found.append(got)
    assert found == [(8, 12, 17), (8, 12, 17)]


def test_pms5003_rejects_a_frame_with_a_wrong_length_field():
    bad = bytearray(REAL_FRAME)
    bad[3] = 0x14
    assert pms5003.frame_status(bad, 0, 32, 32) == "length"


def test_pms5003_commands_carry_their_checksum():
    assert pms5003.command(pms5003.CMD_MODE, 0) == bytes([0x42, 0x4D, 0xE1, 0x00, 0x00, 0x01, 0x70])
    assert pms5003.command(pms5003.CMD_READ, 0) == bytes([0x42, 0x4D, 0xE2, 0x00, 0x00, 0x01, 0x71])
    assert pms5003.command(pms5003.CMD_SLEEP, 0) == bytes([0x42, 0x4D, 0xE4, 0x00, 0x00, 0x01, 0x73])
    assert pms5003.command(pms5003.CMD_SLEEP, 1) == bytes([0x42, 0x4D, 0xE4, 0x00, 0x01, 0x01, 0x74])


def test_pms3003_parses_its_24_byte_frame():
    frame = pms5003.build_frame((5, 7, 9), frame_len=pms5003.PMS3003_FRAME)
    assert len(frame) == 24
    scanner = pms5003.FrameScanner(pms5003.PMS3003_FRAME)
    assert scanner.feed(b"\x4d\x42" + frame) == (5, 7, 9)


class _Uart:
    """A UART whose chip sends nothing (a sensor that stopped answering)."""

    def __init__(self, reply=b""):
        self.written = []
        self.reply = reply

    def write(self, data):
        self.written.append(bytes(data))
        return len(data)

    def any(self):
        return len(self.reply)

    def read(self):
        data, self.reply = self.reply, b""
        return data or None


def test_pms5003_read_times_out_when_the_sensor_stops_answering():
    uart = _Uart()
    sensor = pms5003.PMS5003(uart, lambda ms: None)
    assert sensor.read(timeout_ms=100) is None
    assert uart.written[-1] == pms5003.command(pms5003.CMD_READ, 0)


def test_pms5003_sleep_and_wake_send_the_commands():
    uart = _Uart()
    sensor = pms5003.PMS5003(uart, lambda ms: None)
    sensor.sleep()
    sensor.wake()
    assert uart.written == [pms5003.command(pms5003.CMD_SLEEP, 0), pms5003.command(pms5003.CMD_SLEEP, 1)]
