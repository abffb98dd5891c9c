"""`citysense calibrate` end to end against a real database: fit, show, apply, drift, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
import typer
from typer.testing import CliRunner

from calibration.drift import TUNABLES, DriftFinding
from citysense.calibrate_cli import app, attention_lines

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 10


def seed_colocation(url: str, tmp_path: Path) -> Path:
    """A pms5003 box reading 1.6x the reference + 2, hourly, and the reference file (Taipei time)."""
    rng = np.random.default_rng(5)
    hours = DAYS * 24
    truth = rng.gamma(3.0, 8.0, hours) + 3.0
    raw = (truth - 2.0) / 0.625 + rng.normal(0, 0.5, hours)
    lines = ["time,pm25"]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO devices (device_id, kind, sensor_type, lat, lon) "
            "VALUES ('box-1', 'airbox', 'pms5003', 25, 121)"
        )
        for h in range(hours):
            at = T0 + timedelta(hours=h)
            cur.execute(
                "INSERT INTO readings (time, device_id, metric, raw, value) VALUES (%s, 'box-1', 'pm25', %s, %s)",
                (at, float(raw[h]), float(raw[h])),
            )
            taipei_wall_clock = (at + timedelta(hours=8)).replace(tzinfo=None)
            lines.append(f"{taipei_wall_clock.isoformat(timespec='minutes')},{truth[h]:.1f}")
    path = tmp_path / "reference.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fit_show_apply_round_trip(cli_db: str, tmp_path: Path) -> None:
    reference = seed_colocation(cli_db, tmp_path)
    runner = CliRunner()
    plot = tmp_path / "fit.png"
    result = runner.invoke(
        app,
        ["fit", "--device", "box-1", "--reference", str(reference), "--tz", "Asia/Taipei",
         "--from", "2025-03-01", "--to", "2025-03-11", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    assert "stored calibration" in result.output
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    shown = runner.invoke(app, ["show", "--device", "box-1", "--json"])
    stored = [json.loads(line) for line in shown.output.splitlines()]
    assert shown.exit_code == 0 and [r["model"]["type"] for r in stored] == ["linear"]
    assert stored[0]["fit_stats"]["after"]["n"] == DAYS * 24
    assert runner.invoke(app, ["show"]).exit_code == 0
    applied = runner.invoke(app, ["apply", "--device", "box-1", "--since", "2025-03-01"])
    assert applied.exit_code == 0, applied.output
    assert f"{DAYS * 24} rows checked, {DAYS * 24} changed" in applied.output
    again = runner.invoke(app, ["apply", "--device", "box-1", "--since", "2025-03-01"])
    assert f"{DAYS * 24} rows checked, 0 changed" in again.output
    with psycopg.connect(cli_db) as conn:
        rows = conn.execute("SELECT raw, value FROM readings WHERE device_id = 'box-1'").fetchall()
    slope = np.polyfit([r[0] for r in rows], [r[1] for r in rows], 1)[0]
    assert slope == pytest.approx(0.625, rel=0.02)


def test_fit_refusals_are_one_line_errors(cli_db: str, tmp_path: Path) -> None:
    reference = seed_colocation(cli_db, tmp_path)
    runner = CliRunner()
    naive = runner.invoke(
        app, ["fit", "--device", "box-1", "--reference", str(reference), "--from", "2025-03-01", "--to", "2025-03-11"]
    )
    assert naive.exit_code == 1 and "error:" in naive.output and "no UTC offset" in naive.output
    short = runner.invoke(
        app,
        ["fit", "--device", "box-1", "--reference", str(reference), "--tz", "Asia/Taipei",
         "--from", "2025-03-01", "--to", "2025-03-01T12:00"],
    )
    assert short.exit_code == 1 and "fit refused: only 12 paired hours" in short.output
    unknown = runner.invoke(app, ["apply", "--device", "nope", "--since", "2025-03-01"])
    assert unknown.exit_code == 1 and "unknown device 'nope'" in unknown.output


def test_drift_command_runs(cli_db: str, tmp_path: Path) -> None:
    seed_colocation(cli_db, tmp_path)
    result = CliRunner().invoke(app, ["drift", "--days", "3"])
    assert result.exit_code == 0, result.output
    assert "needs attention, drifting: " in result.output
    assert "needs attention, insufficient data (cannot be checked): " in result.output


def test_drift_summary_lists_drifting_devices_apart_from_those_that_cannot_be_checked() -> None:
    def finding(device: str, status: str) -> DriftFinding:
        return DriftFinding(device, status, "neighbours:3", None, 1.0, 0.0, 100)

    findings = [finding("box-b", "insufficient_data"), finding("box-c", "drift"), finding("box-a", "ok"),
                finding("box-d", "drift"), finding("box-e", "insufficient_data")]
    assert attention_lines(findings) == [
        "needs attention, drifting: box-c, box-d",
        "needs attention, insufficient data (cannot be checked): box-b, box-e",
    ]
    assert attention_lines([finding("box-a", "ok")]) == [
        "needs attention, drifting: none",
        "needs attention, insufficient data (cannot be checked): none",
    ]


def test_drift_takes_one_option_per_tunable_setting_with_its_default_and_bounds(cli_db: str, tmp_path: Path) -> None:
    drift = typer.main.get_command(app).commands["drift"]  # type: ignore[attr-defined]
    options = {param.name: param for param in drift.params}
    for tunable in TUNABLES:
        assert options[tunable.name].default == tunable.kind(tunable.default), tunable.name
        assert options[tunable.name].opts == ["--" + tunable.name.replace("_", "-")]
    seed_colocation(cli_db, tmp_path)
    tuned = CliRunner().invoke(app, ["drift", "--days", "3", "--trend-threshold", "6", "--step-hours", "12"])
    assert tuned.exit_code == 0, tuned.output
    refused = CliRunner().invoke(app, ["drift", "--days", "3", "--trend-hours", "6"])
    assert refused.exit_code != 0 and "trend_hours must be >= 12" in refused.output
