"""The small promises of the calibration CLI: no sensor type, gap counts, where plots go, labels, whole values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from calibration.reference_import import read_reference
from calibration.series import HourlySeries
from citysense.calibrate_cli import app as calibrate_app
from citysense.cli import app
from devtools.colocation import generate, write_reference_moenv
from tests.citysense.test_calibrate_cli import seed_colocation


def test_sensor_type_none_is_stored_as_null_and_an_empty_one_is_refused(cli_db: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["device", "register", "ref-station", "--sensor-type", "none"]).exit_code == 0
    assert runner.invoke(app, ["device", "register", "box-typed"]).exit_code == 0
    assert runner.invoke(app, ["device", "update", "box-typed", "--sensor-type", "none"]).exit_code == 0
    empty = runner.invoke(app, ["device", "register", "box-empty", "--sensor-type", ""])
    assert empty.exit_code != 0 and "say 'none'" in empty.output
    with psycopg.connect(cli_db) as conn:
        types: dict[str, str | None] = dict(conn.execute("SELECT device_id, sensor_type FROM devices").fetchall())
    assert types == {"ref-station": None, "box-typed": None}


def test_moenv_gap_count_ignores_the_empty_hours_of_the_first_and_last_taiwan_days(tmp_path: Path) -> None:
    campaign = generate(2, days=5)
    pm25 = campaign.reference.pm25.copy()
    pm25[30:42] = np.nan  # twelve hours the station really missed
    path = tmp_path / "station.csv"
    write_reference_moenv(HourlySeries(campaign.reference.times, pm25, campaign.reference.rh), path)
    series = read_reference(path)
    assert series.missing_hours() == 12
    assert any(note.startswith("12 hour(s) without") for note in series.notes)


def test_fit_writes_a_plot_only_where_asked(cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = seed_colocation(cli_db, tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    base = ["fit", "--device", "box-1", "--reference", str(reference), "--tz", "Asia/Taipei",
            "--from", "2025-03-01", "--to", "2025-03-11", "--dry-run"]
    runner = CliRunner()
    plain = runner.invoke(calibrate_app, base)
    assert plain.exit_code == 0, plain.output
    assert list(work.iterdir()) == []
    report = tmp_path / "report"
    with_report = runner.invoke(calibrate_app, [*base, "--report", str(report)])
    assert with_report.exit_code == 0, with_report.output
    assert sorted(p.name for p in report.iterdir()) == ["fit-box-1.json", "fit-box-1.png"]
    saved = json.loads((report / "fit-box-1.json").read_text(encoding="utf-8"))
    assert saved["plot"] == str(report / "fit-box-1.png") and saved["stored"] is False


def test_fit_prints_the_model_on_its_own_line_and_never_cuts_a_value(
    cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = seed_colocation(cli_db, tmp_path)
    monkeypatch.setenv("COLUMNS", "40")
    result = CliRunner().invoke(calibrate_app, [
        "fit", "--device", "box-1", "--reference", str(reference), "--tz", "Asia/Taipei",
        "--from", "2025-03-01", "--to", "2025-03-11", "--dry-run", "--json",
    ])
    model = json.loads(result.stdout)["model"]
    human = CliRunner().invoke(calibrate_app, [
        "fit", "--device", "box-1", "--reference", str(reference), "--tz", "Asia/Taipei",
        "--from", "2025-03-01", "--to", "2025-03-11", "--dry-run",
    ])
    assert f"model: {json.dumps(model)}" in human.stdout.splitlines()
    calibrated = next(line for line in human.stdout.splitlines() if line.startswith("all hours, calibrated"))
    assert "…" not in human.stdout and len(calibrated.split()) == 8  # label (3 words), n, R², RMSE, MAE, bias


def test_drift_against_a_reference_names_it_once(cli_db: str, tmp_path: Path) -> None:
    reference = seed_colocation(cli_db, tmp_path)
    result = CliRunner().invoke(calibrate_app, [
        "drift", "--since", "2025-03-01", "--until", "2025-03-11", "--reference", str(reference),
        "--tz", "Asia/Taipei", "--reference-lat", "25", "--reference-lon", "121", "--json",
    ])
    assert result.exit_code == 0, result.output
    [finding] = [json.loads(line) for line in result.stdout.splitlines()]
    assert finding["comparator"] == "reference:reference"
    assert finding["status"] in ("ok", "drift") and finding["hours"] == 240
