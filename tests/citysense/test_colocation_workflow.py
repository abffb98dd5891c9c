"""The calibration guide's workflow through the CLI with --json: import 60 days of 4 boxes, fit, apply, find the drift.

docs/calibration.md walks the same commands; the figures it quotes are printed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from citysense.cli import app
from devtools.colocation import Fault, generate, write_readings_csv, write_reference_csv

DRIFT_ONSET_DAY = 45  # 2025-04-15
EVERY_MINUTES = 1


def run_json(runner: CliRunner, args: list[str]) -> list[dict[str, Any]]:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_import_fit_apply_and_drift_find_the_drifting_box(cli_db: str, tmp_path: Path) -> None:
    campaign = generate(19, faults=(Fault("colo-4", "drift", DRIFT_ONSET_DAY, 0.10),))
    readings = tmp_path / "readings.csv"
    written = write_readings_csv(campaign, readings, every_minutes=EVERY_MINUTES)
    reference = tmp_path / "reference.csv"
    write_reference_csv(campaign.reference, reference)
    runner = CliRunner()
    for box in campaign.boxes:
        registered = runner.invoke(app, ["device", "register", box.device_id, "--lat", str(box.lat),
                                         "--lon", str(box.lon)])
        assert registered.exit_code == 0, registered.output

    [first] = run_json(runner, ["import", str(readings), "--json"])
    print(f"\nimport: {first['rows_read']} readings in {first['seconds']} s ({first['readings_per_second']}/s)")
    assert first["rows_read"] == written and first["rows_stored"] == written and first["rows_refused"] == 0
    assert first["first"].startswith("2025-03-01") and first["last"].startswith("2025-04-29")
    [again] = run_json(runner, ["import", str(readings), "--json"])
    assert again["rows_stored"] == 0 and again["rows_duplicate"] == written
    with psycopg.connect(cli_db) as conn:
        flags = conn.execute("SELECT bit_or(flags), bit_and(flags) FROM readings").fetchone()
        hours = conn.execute("SELECT count(*) FROM readings_1h WHERE metric = 'pm25'").fetchone()
    assert flags is not None and flags[1] & 2048 == 2048  # every row IMPORTED
    assert flags[0] & 16 == 0  # none re-stamped as CLOCK_SKEW: two months old is fine for history
    assert hours is not None and hours[0] == 4 * 60 * 24  # the aggregates cover what was imported

    for box in campaign.boxes:
        [fitted] = run_json(runner, ["calibrate", "fit", "--device", box.device_id, "--reference", str(reference),
                                     "--from", "2025-03-01", "--to", "2025-04-15", "--robust", "--json"])
        gain, offset = fitted["model"]["a"], fitted["model"]["b"]
        print(f"{box.device_id}: a={gain:.4f} (true {box.gain}), b={offset:.3f} (true {box.offset}); "
              f"RMSE {fitted['all']['calibrated']['rmse']} on all, {fitted['kept']['calibrated']['rmse']} kept")
        assert fitted["stored"] and fitted["method"] == "bisquare_irls:linear"
        assert abs(gain / box.gain - 1) < 0.01 and abs(offset - box.offset) < 0.2
        [applied] = run_json(runner, ["calibrate", "apply", "--device", box.device_id, "--since", "2025-03-01",
                                      "--json"])
        assert applied["rows_seen"] == written // 8 and applied["calibration_ids"] == [fitted["calibration_id"]]

    shown = run_json(runner, ["calibrate", "show", "--json"])
    assert {s["device_id"] for s in shown} >= {b.device_id for b in campaign.boxes}
    findings = {f["device_id"]: f for f in run_json(
        runner, ["calibrate", "drift", "--since", "2025-03-01", "--until", "2025-04-30", "--json"]
    )}
    print({d: (f["status"], f["flagged_at"]) for d, f in findings.items()})
    assert findings["colo-4"]["status"] == "drift" and findings["colo-4"]["direction"] == "up"
    assert "2025-04-15" <= findings["colo-4"]["flagged_at"] <= "2025-04-17T00"
    assert [findings[d]["status"] for d in ("colo-1", "colo-2", "colo-3")] == ["ok"] * 3
    assert findings["colo-1"]["comparator"] == "neighbours:2"  # colo-4, found drifting, is no comparator
