"""`citysense bench import` runs end to end on a small campaign: every phase is measured, a second
import stores nothing, and a year of a reference station's hourly MOENV file is stored hour by hour.

Not a timing test: only the counts and the presence of each figure are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.bench.summary import import_rows, summary_table

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_import_bench_measures_every_phase_and_the_reference_year(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "citysense", "bench", "import", "--boxes", "1", "--days", "2",
         "--csv", str(tmp_path / "colo.csv"), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.glob("import-*.json"))
    assert len(files) == 1, proc.stdout[-2000:]
    r = json.loads(files[0].read_text())
    phases = r["phases"]
    assert set(phases) == {"fresh", "again", "overlap", "copy", "reference_year"}
    assert phases["fresh"]["rows"] == r["csv_rows"] == 2 * 24 * 60 * 2  # PM2.5 and RH each minute
    assert phases["fresh"]["stored"] == phases["copy"]["stored"] == r["csv_rows"]
    assert phases["again"]["stored"] == 0  # idempotent
    assert phases["overlap"]["stored"] == r["csv_rows"] - r["csv_rows"] // 2
    year = phases["reference_year"]
    assert 365 * 24 * 2 * 0.9 < year["stored"] <= 365 * 24 * 2  # PM2.5 and RH per hour, a few hours missing
    assert all(p["readings_s"] and p["readings_s"] > 0 for p in phases.values())
    rows = import_rows(r)
    assert [row.target.split(" ")[0] for row in rows] == ["history", "a"]
    assert summary_table(rows, r["backend"]).row_count == 2
