"""Hypothesis strategies for what a broken or hostile device can publish.

Wrong types, huge and non-finite numbers, deep nesting, megabyte strings, invalid UTF-8,
truncated JSON and LASS lines with missing or mangled keys, on every topic the gateway
subscribes to. Shared by the unit fuzz test (decode path) and the end-to-end one.
"""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

DEVICE = st.sampled_from(["box-001", "ab", "UPPER-1", "x" * 65, "bad id", "tab\tid", "nl-id\n", "é-box", "a" * 64])
KIND = st.sampled_from(["airbox", "parking", "truck", ""])
METRIC = st.sampled_from(["pm25", "pm1", "pm10", "t", "rh", "p", "co2", "occupied", "mag", "batt_mv", "rssi",
                          "weird_metric", "PM25", "pm25\n", "", "x" * 40, "a-b"])

HOSTILE_NUMBER = st.one_of(
    st.sampled_from([0, -1, -999, 65535, 2**31, 2**31 - 1, -(2**31) - 1, 2**63 - 1, -(2**63), 2**64 - 1, 1e308,
                     -1e308, 5e-324, 1e11 + 1, 12, 24.5, 71.2, -40.0, 1000.0, 0.5]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
# Wrong types, cheap to draw: hypothesis spends most of a fuzz run drawing, so literals beat recursion.
WRONG_TYPE = st.sampled_from([
    None, True, False, "", "12", "NaN", "x" * 300, [], [1, 2], {}, {"a": 1}, [[[[[[[[1]]]]]]]],
    {"pm25": {"pm25": {"pm25": 1}}}, [None], {"": None}, "\u0000", "\x00", "é", "\ud7ff",
])
JSON_VALUE = HOSTILE_NUMBER | WRONG_TYPE
MEASUREMENTS = st.one_of(
    st.dictionaries(METRIC, HOSTILE_NUMBER, max_size=6),
    st.dictionaries(METRIC, JSON_VALUE, max_size=4),
    WRONG_TYPE,
)


_DEVICE_ID = object()  # stands for the topic's device id in ID_CHOICES
ID_CHOICES = st.sampled_from([_DEVICE_ID] * 8 + ["other-box", None, 7])
GOOD_METRIC = st.sampled_from(["pm25", "pm1", "pm10", "t", "rh", "p", "co2", "occupied", "mag", "batt_mv", "rssi",
                               "weird_metric"])
GOOD_TS = st.sampled_from([0, 1_763_785_200, 946_684_800, 4_102_444_800, 1_763_780_000.25])
GOOD_EV = st.sampled_from(["change", "heartbeat", "boot"])
GOOD_M = st.dictionaries(GOOD_METRIC, HOSTILE_NUMBER, min_size=1, max_size=5)
V1_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "v": st.sampled_from([1, 1, 1, 1, 2, "1", None, 1.0]),
    "id": ID_CHOICES,
    "seq": st.sampled_from([0, 1, 10233, -1, 2**63, 1.5, "7", None, True]),
    "ts": st.sampled_from([0, None, 1_763_785_200, 946_684_800, 4_102_444_800, 1_763_785_200_000, -5, True,
                           1_763_785_200.5, "1763785200", 1e308, 2**64 - 1]) | HOSTILE_NUMBER,
    "m": MEASUREMENTS,
    "ev": st.sampled_from(["change", "heartbeat", "boot", "explode", 3]),
}
FIELD_MASK = st.integers(0, 2 ** len(V1_FIELDS) - 1)
USUAL_MASK = st.sampled_from([0b11111, 0b11111, 0b111111, 0])
BATCH = st.lists(st.fixed_dictionaries({"ts": HOSTILE_NUMBER, "m": MEASUREMENTS}) | JSON_VALUE, max_size=4) | WRONG_TYPE


@st.composite
def v1_document(draw: st.DrawFn, device: str) -> dict[str, object]:
    """Strategies are built once at import: building them per draw costs more than drawing."""
    if not draw(st.booleans()):  # well formed (hypothesis leans to False), with hostile values where they fit
        return {"v": 1, "id": device, "seq": draw(st.integers(0, 2**63 - 1)), "ts": draw(GOOD_TS),
                "m": draw(GOOD_M), "ev": draw(GOOD_EV)}
    doc: dict[str, object] = {}
    present = draw(FIELD_MASK) | draw(USUAL_MASK)
    for bit, (key, strategy) in enumerate(V1_FIELDS.items()):
        if present & (1 << bit):
            value = draw(strategy)
            doc[key] = device if value is _DEVICE_ID else value
    if draw(st.integers(0, 5)) == 3:
        doc["batch"] = draw(BATCH)
    return doc


def _dumps(doc: object) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)


STATUS_VALUE = st.one_of(st.booleans(), HOSTILE_NUMBER, st.text(max_size=80), JSON_VALUE)
STATUS_KEYS = st.lists(st.sampled_from(("online", "fw", "ip", "rssi", "heap", "queued", "extra")), max_size=4,
                       unique=True)


@st.composite
def status_document(draw: st.DrawFn) -> dict[str, object]:
    doc: dict[str, object] = {k: draw(STATUS_VALUE) for k in draw(STATUS_KEYS)}
    if draw(st.integers(0, 3)) > 0:
        doc["online"] = draw(st.booleans())
    return doc


LASS_KEYS = ("device_id", "date", "time", "s_d0", "s_d1", "s_d2", "s_t0", "s_h0", "gps_lat", "gps_lon", "app",
             "ver_format", "tick", "s_0", "s_xyz", "S_D0", "s_toolongkey1")
LASS_VALUE = st.one_of(
    st.sampled_from(["2025-11-22", "2025-02-31", "0000-01-01", "1970-01-01", "9999-12-31", "12:30:05", "25:61:61",
                     "nan", "inf", "-inf", "1e400", "", "1_000", "12.5", "-1", "FT1_003", "74DA38AF4812", "x=y",
                     "0", "23.5", "121.5", "91", "PM25"]),
    st.text(alphabet=st.characters(blacklist_characters="|"), max_size=20),
    HOSTILE_NUMBER.map(str),
)


LASS_KEY_LISTS = st.lists(st.sampled_from(LASS_KEYS), max_size=6)
LASS_GOOD = {
    "device_id": st.sampled_from(["FT1_003", "74DA38AF4812", "B827EB2AA9A8"]),
    "date": st.sampled_from(["2026-11-22", "2016-01-01", "2030-06-30"]),
    "time": st.sampled_from(["03:04:05", "23:59:59"]),
}
SHORT_TEXT = st.text(max_size=10)


@st.composite
def lass_line(draw: st.DrawFn) -> bytes:
    keys = draw(LASS_KEY_LISTS)
    if draw(st.integers(0, 3)) != 3:  # mostly a device that says who it is, with a clock and a value
        keys = ["device_id", "date", "time", "s_d0", *keys]
    parts = [f"{k}={draw(LASS_GOOD[k] if k in LASS_GOOD and not draw(st.booleans()) else LASS_VALUE)}" for k in keys]
    if draw(st.integers(0, 9)) == 0:
        parts.append(draw(SHORT_TEXT))  # a field without '='
    line = "|" + "|".join(parts) + "|"
    if draw(st.integers(0, 9)) == 0:
        line = line.lstrip("|")
    return line.encode("utf-8", "surrogatepass")


def _truncate(data: st.DataObject, payload: bytes) -> bytes:
    return payload[: data.draw(st.integers(0, max(0, len(payload) - 1)))]


BIG = [
    b'{"v":1,"id":"box-001","ts":0,"m":{"pm25":"' + b"x" * 1_000_000 + b'"}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"|device_id=box-001|s_d0=" + b"9" * 300_000 + b"|",
    b"\xff\xfe" * 200_000,
    b'{"v":1,"id":"box-001","ts":0,"m":{"pm25":1' + b"0" * 5000 + b"}}",
]
BIG_PAYLOAD = st.sampled_from(BIG)
RAW = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b"{}", b"1", b'"str"', b"\xc3\x28", b'{"v":1,"m":{"pm25":NaN}}',
                     b'{"v":1,"id":"box-001","m":{"pm25":Infinity}}', b'{"v":1,"id":"box-001","ts":1e400}',
                     b"{\"v\":1,\"id\":\"box-001\",\"m\":{\"pm25\":1}}\x00", b"\xef\xbb\xbf{}"]),
)
SMALL_RAW = st.one_of(st.binary(max_size=200), st.sampled_from([b"", b"{}", b"[]", b"\xc3\x28"]))


NICE_DEVICE = st.sampled_from(["box-001", "box-002", "bay-003", "a" * 64])
NICE_KIND = st.sampled_from(["airbox", "airbox", "parking"])
LASS_TOPIC = st.sampled_from(["LASS/Test/PM25", "LASS/Test/PM25/{device}", "LASS/AirBox/{device}"])
ELSEWHERE = ["citysense/v1/airbox/up", "citysense/v2/airbox/box-001/up", "elsewhere/topic", ""]
FORM = st.integers(0, 9)
ELSEWHERE_INDEX = st.integers(0, 6)


@st.composite
def hostile_message(draw: st.DrawFn, *, big: bool = True, subscribed_only: bool = False) -> tuple[str, bytes]:
    """(topic, payload) as a device could publish it; the topic mostly fits the payload's format."""
    device = draw(NICE_DEVICE if not draw(st.booleans()) else DEVICE)
    kind = draw(NICE_KIND if not draw(st.booleans()) else KIND)
    up, status = f"citysense/v1/{kind}/{device}/up", f"citysense/v1/{kind}/{device}/status"
    lass = draw(LASS_TOPIC).format(device=device)
    form = draw(FORM)
    if form <= 3:
        topic, payload = up, _dumps(draw(v1_document(device)))
    elif form == 4:
        topic, payload = status, _dumps(draw(status_document()))
    elif form <= 6:
        topic, payload = lass, draw(lass_line())
    elif form == 7:
        topic, payload = up, _truncate(draw(st.data()), _dumps(draw(v1_document(device))))
    elif form == 8 and big:
        topic, payload = up, draw(BIG_PAYLOAD)
    else:
        topic, payload = up, draw(RAW if big else SMALL_RAW)
    if draw(FORM) == 0:  # a payload on a topic of another format
        anywhere = [up, status, lass] + ([] if subscribed_only else ELSEWHERE)
        topic = anywhere[draw(ELSEWHERE_INDEX) % len(anywhere)]
    if subscribed_only:
        topic = topic.replace("\n", "").replace("\t", "").replace("+", "").replace("#", "") or "LASS/Test/PM25"
    return topic, payload
