"""The school flag display: shows the colour of the school's air-quality flag on an RGB LED.

The alert evaluator keeps a retained message on `citysense/v1/school/{school}/flag`:
`{"school": ..., "colour": "orange", "rgb": "#ff7e00", "aqi": 128, "scale": ..., "category": ...,
"at": ...}`. The display subscribes to that one topic (no readings, no status, no last will:
it only listens), so a reboot or a reconnect shows the current flag at once from the retained
copy. The LED shows the message's `rgb`: the bands and their colours are the server's rule, not
repeated here. A message for another school, or without a valid `#rrggbb`, is refused with the
reason in the log and the LED keeps its colour. With the broker out of reach for
`flag_offline_s`, the LED goes dark rather than show a flag that may be hours old; the
retained message lights it again on reconnect.
RAM: the app object, the topic string and one parsed message at a time: ~7 KB of heap with the
.mpy files of this module, the LED driver, clock and log (measured once under MicroPython 1.27).
"""

import json

from clock import ticks_diff, ticks_ms
from log import log

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable

    from fwtypes import RGBLed, Ticks
    from session import Session

OFF = (0, 0, 0)
POLL_MS = 200


class FlagError(ValueError):
    pass


def flag_topic(school: str) -> str:
    """The retained topic of a school's flag; refuses a school id that is not one topic level."""
    if not school or "/" in school or "+" in school or "#" in school:
        raise FlagError("school id %r cannot be an MQTT topic level" % school)
    return "citysense/v1/school/" + school + "/flag"


def parse_rgb(text: object) -> "tuple[int, int, int]":
    """'#rrggbb' -> (r, g, b)."""
    if not isinstance(text, str) or len(text) != 7 or text[0] != "#":
        raise FlagError("rgb %r is not #rrggbb" % (text,))
    try:
        return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
    except ValueError:
        raise FlagError("rgb %r is not #rrggbb" % (text,))


def parse_flag(payload: bytes, school: str) -> "tuple[tuple[int, int, int], str]":
    """A flag message -> ((r, g, b), colour name); FlagError says why a message is refused."""
    try:
        data = json.loads(payload)
    except ValueError:
        raise FlagError("flag message is not JSON")
    if not isinstance(data, dict):
        raise FlagError("flag message must be a JSON object")
    if data.get("school") != school:
        raise FlagError("flag message is for school %r, not %r" % (data.get("school"), school))
    colour = data.get("colour")
    return parse_rgb(data.get("rgb")), colour if isinstance(colour, str) else ""


class FlagDisplay:
    def __init__(self, session: "Session", led: "RGBLed", school: str, offline_ms: int = 600000) -> None:
        self.session = session
        self.led = led
        self.school = school
        self.topic = flag_topic(school)
        self.offline_ms = offline_ms
        self.rgb = OFF  # the flag's colour (kept while dark, shown again on reconnect)
        self.colour = ""
        self.lit = False
        self.refused = 0
        self.cycles = 0
        self.last_online: "Ticks" = ticks_ms()
        session.on_message = self.on_message

    def on_message(self, topic: "str | bytes", msg: bytes) -> None:
        if isinstance(topic, bytes):
            topic = topic.decode()
        if topic != self.topic:
            return
        try:
            rgb, colour = parse_flag(msg, self.school)
        except FlagError as exc:
            self.refused += 1
            log("flag_refused", reason=str(exc))
            return
        self.rgb = rgb
        self.colour = colour
        self._light(rgb)
        log("flag", school=self.school, colour=colour)

    def _light(self, rgb: "tuple[int, int, int]") -> None:
        self.led.show(rgb)
        self.lit = rgb != OFF

    def tick(self) -> int:
        """Service the session; dark after `offline_ms` without a broker. Returns ms to sleep."""
        self.cycles += 1
        now = ticks_ms()
        if self.session.poll():
            self.last_online = now
        elif self.lit and ticks_diff(now, self.last_online) >= self.offline_ms:
            log("flag_dark", reason="broker unreachable", school=self.school)
            self._light(OFF)
        return POLL_MS


def run(display: FlagDisplay, sleep_ms: "Callable[[int], None]", stop: "Callable[[], bool]",
        feed: "Callable[[], None] | None" = None) -> None:
    """Tick the display until `stop()` is true, feeding the watchdog on each turn; never raises
    (a failing turn is logged and the next one tried a second later; the watchdog guards hangs)."""
    while not stop():
        if feed is not None:
            feed()
        try:
            wait = display.tick()
        except Exception as exc:  # noqa: BLE001 - keep the flag up whatever one turn does
            log("flag_error", reason=repr(exc))
            wait = 1000
        sleep_ms(wait)
    display.session.close()
