"""The flag app and LED driver on a fake session and fake PWM pins; portable: also run under
MicroPython by firmware/tests_mpy/run.mjs, so the parsing is proven on the device's interpreter."""

# ruff: noqa: UP031 - also runs under MicroPython: %-formatting

from drivers.rgbled import PWMRGBLed
from flag.app import FlagDisplay, FlagError, flag_topic, parse_flag
from fwtest_support import raises

SCHOOL = "tp-es-0042"
TOPIC = "citysense/v1/school/tp-es-0042/flag"


class PWMPin:
    def __init__(self):
        self.duty = -1

    def duty_u16(self, value):
        self.duty = value


class QuietSession:
    """Stands in for session.Session: `up` says whether the broker is reachable."""

    def __init__(self):
        self.up = True
        self.on_message = None
        self.closed = False

    def poll(self):
        return self.up

    def close(self, status_payload=None):
        self.closed = True


def message(rgb, school=SCHOOL):
    return ('{"school": "%s", "colour": "orange", "rgb": "%s", "aqi": 120, "scale": "moenv", '
            '"category": "unhealthy for sensitive groups", "at": "2026-12-01T08:00:00Z"}' % (school, rgb)).encode()


def test_parse_flag_reads_rgb_and_refuses_other_schools_and_bad_colours():
    assert parse_flag(message("#ff7e00"), SCHOOL) == ((255, 126, 0), "orange")
    assert "tp-es-0001" in str(raises(FlagError, parse_flag, message("#ff7e00", "tp-es-0001"), SCHOOL))
    raises(FlagError, parse_flag, message("#ff7e0"), SCHOOL)
    raises(FlagError, parse_flag, message("#gg7e00"), SCHOOL)
    raises(FlagError, parse_flag, b"{", SCHOOL)
    raises(FlagError, flag_topic, "a/b")
    assert flag_topic(SCHOOL) == TOPIC


def test_a_common_anode_led_shows_the_flag_with_inverted_duties():
    pins = (PWMPin(), PWMPin(), PWMPin())
    session = QuietSession()
    display = FlagDisplay(session, PWMRGBLed(pins[0], pins[1], pins[2], common_anode=True), SCHOOL)
    assert [p.duty for p in pins] == [65535, 65535, 65535]  # dark
    session.on_message(TOPIC.encode(), message("#ff7e00"))
    assert [p.duty for p in pins] == [0, 65535 - 126 * 257, 65535]
    assert display.colour == "orange" and display.lit
    session.on_message(b"citysense/v1/school/other/flag", message("#00e400", "other"))
    session.on_message(TOPIC.encode(), b"garbage")
    assert [p.duty for p in pins] == [0, 65535 - 126 * 257, 65535] and display.refused == 1


def test_the_led_goes_dark_after_the_offline_time_and_not_before():
    pins = (PWMPin(), PWMPin(), PWMPin())
    session = QuietSession()
    display = FlagDisplay(session, PWMRGBLed(pins[0], pins[1], pins[2]), SCHOOL, offline_ms=0)
    session.on_message(TOPIC, message("#ff0000"))
    display.tick()
    assert pins[0].duty == 65535  # connected: lit
    session.up = False
    display.tick()
    assert [p.duty for p in pins] == [0, 0, 0] and not display.lit
    assert display.rgb == (255, 0, 0)  # remembered until the broker sends the flag again
