"""The newest Observation of each Datastream read from latest_readings gives the same JSON as the
general LATERAL path, on a city seeded with the cases that make the two tables differ: late data,
NULL values, flags, a reading from the future, a newest reading flagged UNKNOWN_METRIC, one written
past the batch writer, a deleted newest reading, a re-flagged one, a retired device, calibrated
values and a Datastream of one reading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import psycopg
import pytest

from api.sensorthings.newest_observation import asks_for_newest_only
from api.sensorthings.query_options import parse_options
from api.sensorthings.query_runner import QueryRunner
from contracts.flags import Flag
from contracts.records import ReadingRow
from ingest.latest_readings import rebuild
from tests.conftest import write_batches

BASE = "http://127.0.0.1/sta/v1.1"
NEWEST = "Observations($orderby=phenomenonTime desc;$top=1)"
DEVICES = ("nw-plain", "nw-late", "nw-null", "nw-flag", "nw-future", "nw-unknown", "nw-bypass", "nw-deleted",
           "nw-reflag", "nw-retired", "nw-single")
"""One device per case; its pm25 Datastream is the case, its rh Datastream a plain one beside it."""


def _row(device: str, metric: str, ts: float, raw: float, value: float | None, flags: int = 0,
         calibration_id: int | None = None) -> ReadingRow:
    return (ts, device, metric, raw, value, Flag(flags), calibration_id)


def _seed_city(url: str) -> float:
    """The cases above, written the way production writes them (the batch writer, which keeps
    latest_readings) except where a case is a writer that bypasses it. Returns the seed's 'now'."""
    now = float(int(time.time()))
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO calibrations (id, device_id, sensor_type, metric, model) VALUES "
            "(7, NULL, 'pms5003', 'pm25', '{\"type\": \"linear\", \"a\": 0.5, \"b\": 0.0}')"
        )
        for device in DEVICES:
            conn.execute("INSERT INTO devices (device_id, kind, name, sensor_type, registered, city) "
                         "VALUES (%s, 'airbox', %s, 'pms5003', true, '臺北市')", (device, device.upper()))
    history = [
        _row(d, m, now - 600 + 60 * i, 20.0 + i, 10.0 + i / 2, 0, 7 if m == "pm25" else None)
        for d in DEVICES if d != "nw-single" for m in ("pm25", "rh") for i in range(10)
    ]
    single = [_row("nw-single", "pm25", now - 30, 9.0, 4.5, 0, 7), _row("nw-single", "rh", now - 30, 60, 60)]
    write_batches(url, history, single)
    write_batches(url,
           [_row("nw-late", "pm25", now - 5, 31.0, 15.5, 0, 7)],
           [_row("nw-late", "pm25", now - 3, 30.0, 15.0, 0, 7)],  # arrives later, measured earlier than...
           [_row("nw-late", "pm25", now - 4, 99.0, 49.5, 0, 7)],  # ...and this one, older than the newest
           [_row("nw-null", "pm25", now - 2, -1.0, None, Flag.SENTINEL)],
           [_row("nw-flag", "pm25", now - 2, 25.0, 12.5, Flag.STUCK | Flag.OUT_OF_RANGE, 7)],
           [_row("nw-future", "pm25", now + 7200, 40.0, 20.0, 0, 7)],  # a clock two hours ahead
           [_row("nw-retired", "pm25", now - 1, 22.0, 11.0, 0, 7)])
    with psycopg.connect(url) as conn:
        # a newest pm25 reading flagged as an unknown metric: not an Observation, so the older one is the answer
        conn.execute("INSERT INTO readings (time, device_id, metric, raw, value, flags) "
                     "VALUES (to_timestamp(%s), 'nw-unknown', 'pm25', 5, NULL, %s)",
                     (now - 1, int(Flag.UNKNOWN_METRIC)))
        rebuild(conn)  # ...and latest_readings holds it (what a rebuild after an import does)
        # a writer past the batch writer: latest_readings is left behind
        conn.execute("INSERT INTO readings (time, device_id, metric, raw, value, flags) "
                     "VALUES (to_timestamp(%s), 'nw-bypass', 'pm25', 50, 25, 0)", (now - 1,))
        # the newest reading deleted: latest_readings points at a reading that is gone
        conn.execute("DELETE FROM readings WHERE device_id = 'nw-deleted' AND metric = 'pm25' AND time = "
                     "(SELECT max(time) FROM readings WHERE device_id = 'nw-deleted' AND metric = 'pm25')")
        # the newest reading re-judged in place (series flags): the trigger of migration 0013 follows it
        conn.execute("UPDATE readings SET flags = flags | %s, value = NULL WHERE device_id = 'nw-reflag' "
                     "AND metric = 'pm25' AND time = to_timestamp(%s)", (int(Flag.STUCK), now - 60))
        conn.execute("UPDATE devices SET retired_at = now() WHERE device_id = 'nw-retired'")
    return now


def _get(url: str, path: str, query: Mapping[str, str], newest_from_latest: bool) -> Any:
    async def run() -> Any:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await QueryRunner(conn, BASE, newest_from_latest=newest_from_latest).get(path, query)

    return asyncio.run(run())


REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("Datastreams", {"$expand": f"Thing,{NEWEST}", "$top": "1000"}),
    ("Datastreams", {"$expand": f"Thing,{NEWEST}", "$filter": "name eq 'PM2.5' and Thing/properties/city eq '臺北市'",
                     "$top": "1000", "$count": "true"}),
    ("Datastreams", {"$expand": "Observations($orderby=resultTime desc;$top=1;$select=result,phenomenonTime,"
                                "resultQuality,parameters)"}),
    ("Datastreams", {"$expand": "Observations($orderby=phenomenonTime desc;$top=1;$count=true;"
                                "$expand=FeatureOfInterest)", "$top": "5", "$skip": "3"}),
    ("Datastreams", {"$expand": NEWEST, "$select": "id,name"}),  # no phenomenonTime to prove it with
    ("Things", {"$expand": f"Datastreams($expand={NEWEST})", "$top": "1000"}),
    ("Datastreams('nw-late:pm25')", {"$expand": NEWEST}),
    ("Datastreams('nw-future:pm25')", {"$expand": NEWEST}),
]


@pytest.mark.slow
def test_newest_observations_from_latest_readings_equal_the_general_path(database_url: str) -> None:
    _seed_city(database_url)
    for path, query in REQUESTS:
        fast = _get(database_url, path, query, newest_from_latest=True)
        general = _get(database_url, path, query, newest_from_latest=False)
        assert fast == general, (path, query)
    every = _get(database_url, "Datastreams", REQUESTS[0][1], newest_from_latest=True)
    pm25 = {d["@iot.id"]: d for d in every["value"] if d["@iot.id"].endswith(":pm25")}
    assert len(pm25) == len(DEVICES)
    # the cases are what they claim to be: the answer, where latest_readings alone would be wrong
    newest = {ident: d["Observations"][0] for ident, d in pm25.items()}
    assert newest["nw-late:pm25"]["result"] == 15.0
    assert newest["nw-null:pm25"]["result"] is None and newest["nw-null:pm25"]["resultQuality"] == ["SENTINEL"]
    assert newest["nw-flag:pm25"]["resultQuality"] == ["OUT_OF_RANGE", "STUCK"]
    assert newest["nw-future:pm25"]["parameters"]["raw"] == 40.0
    assert newest["nw-unknown:pm25"]["parameters"]["raw"] == 29.0
    assert newest["nw-bypass:pm25"]["parameters"]["raw"] == 50.0
    assert newest["nw-deleted:pm25"]["parameters"]["raw"] == 28.0
    assert newest["nw-reflag:pm25"]["resultQuality"] == ["STUCK"] and newest["nw-reflag:pm25"]["result"] is None
    assert newest["nw-retired:pm25"]["parameters"] == {"raw": 22.0, "flags": 0, "calibrationId": 7}
    assert "Observations@iot.nextLink" not in pm25["nw-single:pm25"]
    assert all("Observations@iot.nextLink" in d for i, d in pm25.items() if i != "nw-single:pm25")


@pytest.mark.slow
def test_latest_readings_answers_exactly_the_datastreams_it_is_proven_for(database_url: str) -> None:
    """Every latest row is marked (a value no reading has); a marked value in the answer shows the
    fast path served that Datastream. It must serve the plain ones and none of the unproven ones."""
    _seed_city(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE latest_readings SET raw = -12345")  # the trigger runs on readings only
    answer = _get(database_url, "Datastreams", REQUESTS[0][1], newest_from_latest=True)
    served = {d["@iot.id"] for d in answer["value"] if d["Observations"][0]["parameters"]["raw"] == -12345}
    unproven = {"nw-future:pm25", "nw-unknown:pm25", "nw-bypass:pm25", "nw-deleted:pm25"}
    everything = {d["@iot.id"] for d in answer["value"]}
    assert served == everything - unproven
    without = _get(database_url, "Datastreams", {"$expand": NEWEST, "$select": "id,name"}, newest_from_latest=True)
    assert all(d["Observations"][0]["parameters"]["raw"] != -12345 for d in without["value"])


@pytest.mark.parametrize(("inner", "newest_only"), [
    ("$orderby=phenomenonTime desc;$top=1", True),
    ("$orderby=resultTime desc;$top=1;$select=result", True),
    ("$orderby=phenomenonTime desc;$top=1;$count=true", True),
    ("$orderby=phenomenonTime desc;$top=1;$skip=0", True),
    ("$orderby=phenomenonTime asc;$top=1", False),
    ("$orderby=phenomenonTime;$top=1", False),
    ("$orderby=phenomenonTime desc;$top=2", False),
    ("$orderby=phenomenonTime desc;$top=1;$skip=1", False),
    ("$orderby=phenomenonTime desc;$top=1;$filter=result gt 10", False),
    ("$orderby=phenomenonTime desc,result desc;$top=1", False),
    ("$orderby=result desc;$top=1", False),
    ("$top=1", False),
])
def test_only_the_newest_one_query_is_recognised(inner: str, newest_only: bool) -> None:
    expand = parse_options({"$expand": f"Observations({inner})"}).expand[0]
    assert asks_for_newest_only(expand.options) is newest_only

