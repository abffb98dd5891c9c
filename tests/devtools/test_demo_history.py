"""The demo's past: written through the gateway's pipeline, aggregated, once; one drifting box; the
co-location campaign matches the reference-station file in the repository."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from calibration.drift import Site, detect_drift
from calibration.reference_import import read_reference
from contracts.flags import Flag
from devtools.simulator.colocation import CAMPAIGN_START, COLOCATED_BOX, REFERENCE_FILE, reference_station_csv
from devtools.simulator.fleet import DRIFTING_BOX, FleetModel, make_airboxes, make_parking
from devtools.simulator.history import write_history
from devtools.simulator.publisher import register_fleet
from ingest.calibration_store import hourly_series, list_devices, recalibrate

DAYS = 14.0  # as the demo: a 7-day baseline (calibration.drift) before the 5 days of drift


def test_reference_file_in_the_repository_is_the_colocation_campaign_of_the_demo() -> None:
    assert REFERENCE_FILE.read_text(encoding="utf-8") == reference_station_csv()
    series = read_reference(REFERENCE_FILE)
    assert len(series) == 14 * 24 and series.rh is not None


def _history(database_url: str, airboxes: int, end: float) -> FleetModel:
    boxes, spots = make_airboxes(airboxes, drift_since=end - 5 * 86400), make_parking(5)
    register_fleet(database_url, boxes, spots)
    return FleetModel(boxes, spots)


def test_history_is_stored_as_the_gateway_stores_live_data_and_aggregated(database_url: str) -> None:
    end = time.time()
    report = write_history(database_url, _history(database_url, 5, end), DAYS, end=end)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE flags & %s <> 0), count(DISTINCT calibration_id), "
            "count(*) FILTER (WHERE metric = 'pm25' AND value IS DISTINCT FROM raw) FROM readings "
            "WHERE device_id LIKE 'tp-school-%%'",
            (int(Flag.REPLAYED | Flag.UNREGISTERED_DEVICE | Flag.CLOCK_SKEW | Flag.NO_CLOCK),),
        ).fetchone()
        hourly = conn.execute(
            "SELECT sum(count)::int FROM readings_1h WHERE device_id = 'tp-school-0001' AND metric = 'pm25'"
        ).fetchone()
        parking = conn.execute("SELECT count(*) FROM parking_events").fetchone()
    assert rows is not None and hourly is not None and parking is not None
    stored, untrusted, calibrations, calibrated = rows
    assert stored == 5 * 5 * DAYS * 24  # five boxes, five metrics, hourly
    assert untrusted == 0  # received as live messages: no replay, clock or registration bits
    assert calibrations >= 1 and calibrated > 0  # the gateway's calibrator ran: the PMS5003 default model
    assert hourly[0] == DAYS * 24  # aggregates refreshed over the range written
    with psycopg.connect(database_url) as conn:  # the one engine, re-applied to history, agrees with it
        reapplied = recalibrate(conn, "tp-school-0001", datetime.fromtimestamp(end - DAYS * 86400 - 60, UTC))
    assert reapplied.rows_seen == DAYS * 24 and reapplied.rows_changed == 0
    assert parking[0] == report.parking_events > 0
    again = write_history(database_url, FleetModel(make_airboxes(5), make_parking(5)), DAYS, end=end)
    assert again.readings == 0 and not again.windows, "a restarted demo wrote its past a second time"
    later = write_history(database_url, FleetModel(make_airboxes(5), make_parking(5)), DAYS, end=end + 3 * 3600)
    assert later.readings > 0
    with psycopg.connect(database_url) as conn:
        gaps = conn.execute(
            "SELECT min(d), max(d) FROM (SELECT extract(epoch FROM time - lag(time) OVER (ORDER BY time)) AS d "
            "FROM readings WHERE device_id = 'tp-school-0001' AND metric = 'pm25') AS steps"
        ).fetchone()
    assert gaps is not None and gaps[0] >= 3599 and gaps[1] <= 3601, "the hours it was stopped filled, once"


def test_demo_history_shows_one_drifting_box_among_healthy_ones(database_url: str) -> None:
    end = time.time()
    model = _history(database_url, 60, end)
    write_history(database_url, model, DAYS, end=end)
    assert write_history(database_url, model, DAYS, end=end).messages == 0  # the campaign too is stored once
    finish = datetime.fromtimestamp(end, UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(database_url) as conn:
        sites = [
            Site(info.device_id, info.lat, info.lon,
                 hourly_series(conn, info.device_id, finish - timedelta(days=DAYS), finish, column="value"))
            for info in list_devices(conn) if info.kind == "airbox" and info.lat is not None and info.lon is not None
        ]
    findings = {f.device_id: f.status for f in detect_drift(sites)}
    assert len(findings) == 60
    drifting = [d for d, status in findings.items() if status == "drift"]
    assert DRIFTING_BOX in drifting
    assert drifting == [DRIFTING_BOX], f"healthy boxes flagged as drifting: {sorted(set(drifting) - {DRIFTING_BOX})}"
    healthy = [status for d, status in findings.items() if d != DRIFTING_BOX]
    # a box with fewer than two neighbours within 3 km cannot be compared: said so, not called drifting
    assert healthy.count("ok") >= 50 and healthy.count("insufficient_data") <= 2
    assert findings[COLOCATED_BOX] == "ok"
    with psycopg.connect(database_url) as conn:
        campaign = conn.execute(
            "SELECT count(*) FROM readings WHERE device_id = %s AND metric = 'pm25' "
            "AND time >= %s AND time < %s + interval '14 days'",
            (COLOCATED_BOX, CAMPAIGN_START, CAMPAIGN_START),
        ).fetchone()
    assert campaign is not None and campaign[0] == 14 * 24, "one reading an hour beside the reference station"
