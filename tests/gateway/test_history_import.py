"""`citysense import` puts history through the live rules: validation, flags, registry, calibration, one writer."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from citysense.cli import app
from contracts.flags import Flag
from devtools.colocation import generate, write_reference_moenv
from gateway.history_formats import HistoryFormatError, read_csv
from gateway.history_import import HistoryImporter
from ingest.batch_writer import BatchWriter
from ingest.device_store import DeviceFields, register_devices


def import_json(args: list[str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["import", *args, "--json"])
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("device,time,metric,value\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_years_old_history_keeps_its_time_and_is_flagged_imported_not_clock_skew(cli_db: str, tmp_path: Path) -> None:
    register_devices(cli_db, [("old-box", DeviceFields(lat=25.0, lon=121.5))])
    csv_file = write_csv(tmp_path / "sd-card.csv", [
        "old-box,2019-06-01T08:00:00+08:00,pm25,20.0",
        "old-box,2019-06-01T08:00:00+08:00,rh,70",
        "old-box,2019-06-01T08:01:00+08:00,pm25,-1",  # the sensor's "no value": SENTINEL, as live
        "old-box,1559347320,pm25,21.5",  # Unix seconds work too
    ])
    answer = import_json([str(csv_file)])
    assert answer["rows_stored"] == 4 and answer["rows_refused"] == 0
    with psycopg.connect(cli_db) as conn:
        rows = conn.execute(
            "SELECT time, metric, raw, value, flags, calibration_id FROM readings ORDER BY time, metric"
        ).fetchall()
    assert rows[0][0] == datetime(2019, 6, 1, 0, 0, tzinfo=UTC)
    assert all(r[4] & Flag.IMPORTED and not r[4] & Flag.CLOCK_SKEW for r in rows)
    sentinel = next(r for r in rows if r[2] == -1)
    assert sentinel[3] is None and sentinel[4] & Flag.SENTINEL
    pm = next(r for r in rows if r[1] == "pm25" and r[2] == 20.0)
    assert pm[5] is not None and pm[3] != 20.0  # calibrated by the pms5003 default, as a live reading is


def test_a_second_import_adds_nothing_and_bad_rows_are_refused_with_their_line(cli_db: str, tmp_path: Path) -> None:
    register_devices(cli_db, [("box-a", DeviceFields(lat=25.0, lon=121.5))])
    csv_file = write_csv(tmp_path / "log.csv", [
        "box-a,2025-01-02T00:00:00Z,pm25,10",
        "box-a,2025-01-02T00:01:00Z,pm25,ten",
        "box-a,2025-01-02T00:02:00,pm25,11",
        "box-a,2099-01-01T00:00:00Z,pm25,12",
    ])
    first = import_json([str(csv_file)])
    assert (first["rows_read"], first["rows_stored"], first["rows_refused"]) == (4, 1, 3)
    assert any(r.startswith("line 3: ") for r in first["refusals"])
    assert any("no UTC offset" in r for r in first["refusals"])
    assert any("in the future" in r for r in first["refusals"])
    second = import_json([str(csv_file)])
    assert (second["rows_stored"], second["rows_duplicate"]) == (0, 1)


def test_aggregates_are_refreshed_over_the_days_imported_only_not_the_days_between(
    cli_db: str, tmp_path: Path, backend: str
) -> None:
    if backend == "timescaledb":  # the backend recorded at migration (ingest.backend), as the code decides it
        pytest.skip("readings_1h is a continuous aggregate there: no stale row can be planted to prove the range")
    register_devices(cli_db, [("box-b", DeviceFields(lat=25.0, lon=121.5))])
    with psycopg.connect(cli_db) as conn:
        conn.execute("INSERT INTO readings_1h (bucket, device_id, metric, avg, min, max, count) "
                     "VALUES ('2025-02-10T00:00Z', 'box-b', 'pm25', 99, 99, 99, 1)")  # stale, outside the range
    csv_file = write_csv(tmp_path / "day.csv", [
        "box-b,2025-02-08T01:00:00Z,pm25,10", "box-b,2025-02-08T01:00:00Z,rh,60",
        "box-b,2025-02-12T05:30:00Z,pm25,10", "box-b,2025-02-12T05:30:00Z,rh,60",
        "box-b,2025-02-12T05:40:00Z,pm25,20", "box-b,2025-02-12T05:40:00Z,rh,60",
    ])
    answer = import_json([str(csv_file)])
    assert answer["aggregates_refreshed"] == "postgresql"
    assert answer["refreshed_days"] == [["2025-02-08", "2025-02-08"], ["2025-02-12", "2025-02-12"]]
    with psycopg.connect(cli_db) as conn:
        hours = conn.execute(
            "SELECT bucket, avg, count FROM readings_1h WHERE device_id = 'box-b' AND metric = 'pm25' ORDER BY 1"
        ).fetchall()
    assert [(h[0].day, h[2]) for h in hours] == [(8, 1), (10, 1), (12, 2)]
    assert hours[1][1] == 99  # the day between the two imported days was left alone


def test_lass_history_json_registers_an_unknown_box_as_lass_and_flags_it_unregistered(
    cli_db: str, tmp_path: Path
) -> None:
    doc = {"device_id": "74DA38F210A2", "feeds": [{"AirBox": [
        {"2024-12-01T00:00:00Z": {"s_d0": 15, "s_h0": 80, "s_t0": 21.5}},
        {"2024-12-01T00:05:00Z": {"s_d0": 17, "s_h0": 81, "s_t0": 21.4}},
    ]}]}
    path = tmp_path / "history.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    answer = import_json([str(path), "--format", "lass-json"])
    assert answer["rows_stored"] == 6 and answer["registered_new"] == ["74DA38F210A2"]
    with psycopg.connect(cli_db) as conn:
        kind = conn.execute("SELECT kind, registered FROM devices WHERE device_id = '74DA38F210A2'").fetchone()
        flags = conn.execute("SELECT bit_and(flags) FROM readings").fetchone()
    assert kind == ("lass", False)
    assert flags is not None and flags[0] & Flag.UNREGISTERED_DEVICE and flags[0] & Flag.IMPORTED


def test_lass_history_for_a_citysense_box_is_refused_by_the_namespace_rule(cli_db: str, tmp_path: Path) -> None:
    register_devices(cli_db, [("box-c", DeviceFields(lat=25.0, lon=121.5))])
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"device_id": "box-c", "feeds": [
        {"timestamp": "2024-12-01T00:00:00Z", "s_d0": 15}]}), encoding="utf-8")
    answer = import_json([str(path), "--format", "lass-json"])
    assert answer["rows_stored"] == 0 and answer["rows_refused"] == 1
    assert "LASS" in answer["refusals"][0]


def test_moenv_station_file_becomes_the_stations_hourly_readings(cli_db: str, tmp_path: Path) -> None:
    campaign = generate(4, days=3)
    path = tmp_path / "banqiao.csv"
    write_reference_moenv(campaign.reference, path)
    answer = import_json([str(path), "--format", "moenv", "--device", "moenv-banqiao"])
    assert answer["rows_stored"] == 2 * 3 * 24  # PM2.5 and RH for every hour
    with psycopg.connect(cli_db) as conn:
        first = conn.execute("SELECT min(time) FROM readings WHERE device_id = 'moenv-banqiao'").fetchone()
    assert first is not None and first[0] == datetime(2025, 3, 1, tzinfo=UTC)


def test_a_closed_network_refuses_history_of_unknown_devices(database_url: str, tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "x.csv", ["stranger,2025-01-02T00:00:00Z,pm25,10"])

    async def run() -> tuple[int, list[str]]:
        async with HistoryImporter(database_url, kind="airbox", accept_unknown=False) as importer:
            report = await importer.import_chunks(read_csv(csv_file))
        return report.rows_stored, report.refusals

    stored, refusals = asyncio.run(run())
    assert stored == 0 and refusals == ["device 'stranger' is not registered"]


def test_a_file_without_the_columns_is_refused_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("when,pm25\n2025-01-01T00:00Z,3\n", encoding="utf-8")
    with pytest.raises(HistoryFormatError, match="header lacks"):
        list(read_csv(path))


def test_an_import_overlapping_stored_rows_stores_only_the_new_ones_and_a_repeat_adds_nothing(
    cli_db: str, tmp_path: Path
) -> None:
    register_devices(cli_db, [("box-d", DeviceFields(lat=25.0, lon=121.5, sensor_type="pms5003"))])
    minutes = [f"box-d,2025-01-03T{m // 60:02d}:{m % 60:02d}:00Z,{metric},{10 + m % 7}"
               for m in range(300) for metric in ("pm25", "rh")]
    first = import_json([str(write_csv(tmp_path / "first.csv", minutes[:400]))])
    assert first["rows_stored"] == 400
    with psycopg.connect(cli_db) as conn:
        before = conn.execute("SELECT time, metric, raw, value, flags, calibration_id FROM readings").fetchall()
    both = import_json([str(write_csv(tmp_path / "both.csv", minutes))])  # its first 400 rows are stored already
    assert (both["rows_read"], both["rows_stored"], both["rows_duplicate"]) == (600, 200, 400)
    again = import_json([str(tmp_path / "both.csv")])
    assert (again["rows_stored"], again["rows_duplicate"]) == (0, 600)
    with psycopg.connect(cli_db) as conn:
        after = conn.execute("SELECT time, metric, raw, value, flags, calibration_id FROM readings").fetchall()
        latest = conn.execute("SELECT max(time) FROM latest_readings WHERE device_id = 'box-d'").fetchone()
    assert len(after) == 600 and set(before) <= set(after)  # the stored rows were left as they were
    assert latest is not None and latest[0] == datetime(2025, 1, 3, 4, 59, tzinfo=UTC)


def test_interleaved_devices_unknown_metrics_and_out_of_range_values_get_the_live_flags_and_null_values(
    cli_db: str, tmp_path: Path
) -> None:
    register_devices(cli_db, [("box-e", DeviceFields(lat=25.0, lon=121.5, sensor_type="pms5003"))])
    lines = []
    for m in range(40):
        at = f"2025-01-04T00:{m:02d}:00Z"
        lines += [f"box-e,{at},pm25,{12 + m % 3}", f"box-f,{at},pm25,{15 + m % 4}", f"box-e,{at},rh,{60 + m % 5}"]
    lines += ["box-e,2025-01-04T01:00:00Z,glow,3.5", "box-e,2025-01-04T01:00:00Z,pm25,5000",
              "box-f,2025-01-04T01:00:00Z,rh,140"]
    answer = import_json([str(write_csv(tmp_path / "mixed.csv", lines))])
    assert (answer["rows_stored"], answer["registered_new"]) == (123, ["box-f"])
    with psycopg.connect(cli_db) as conn:
        odd = conn.execute("SELECT device_id, metric, value, flags FROM readings WHERE time = '2025-01-04T01:00Z' "
                           "ORDER BY metric").fetchall()
        calibrated = conn.execute("SELECT count(*) FROM readings WHERE device_id = 'box-e' AND metric = 'pm25' "
                                  "AND calibration_id IS NOT NULL AND value IS NOT NULL").fetchone()
        unregistered = conn.execute("SELECT bool_and(flags & %s <> 0) FROM readings WHERE device_id = 'box-f'",
                                    (int(Flag.UNREGISTERED_DEVICE),)).fetchone()
    assert [(d, m, v) for d, m, v, _f in odd] == [
        ("box-e", "glow", None), ("box-e", "pm25", None), ("box-f", "rh", None)
    ]
    assert odd[0][3] & Flag.UNKNOWN_METRIC and odd[1][3] & Flag.OUT_OF_RANGE and odd[2][3] & Flag.RH_OVER_100
    assert calibrated == (40,) and unregistered == (True,)


def test_the_writer_tells_a_span_over_stored_readings_from_one_over_new_time(cli_db: str, tmp_path: Path) -> None:
    import_json([str(write_csv(tmp_path / "day.csv", ["box-g,2025-01-05T10:00:00Z,pm25,10",
                                                       "box-g,2025-01-05T10:05:00Z,pm25,11"]))])
    at = datetime(2025, 1, 5, 10, tzinfo=UTC).timestamp()

    async def ask(spans: list[tuple[str, str, float, float]]) -> bool:
        writer = BatchWriter(cli_db)
        try:
            return await writer.holds_readings_within(spans)
        finally:
            await writer.close()

    assert asyncio.run(ask([("box-g", "pm25", at - 60, at)]))  # inclusive at both ends
    assert asyncio.run(ask([("box-g", "rh", at, at + 300), ("box-g", "pm25", at + 300, at + 400)]))
    assert not asyncio.run(ask([("box-g", "pm25", at + 1, at + 299), ("box-g", "rh", at, at + 300)]))
    assert not asyncio.run(ask([]))
