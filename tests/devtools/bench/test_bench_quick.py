"""`citysense bench ingest --quick --peer node-red` runs end to end and its JSON holds every figure,
with no loss of ours, and the Node-RED peer measured beside it (when npm can install it).

Not a timing test: the figures depend on the machine; only their presence and the
exactly-once count are asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.bench.summary import ingest_rows, summary_table
from devtools.local_broker import mosquitto_path

REPO = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed"),
]


def test_quick_ingest_bench_writes_complete_json_and_loses_nothing(tmp_path: Path) -> None:
    with_peer = shutil.which("npm") is not None
    proc = subprocess.run(
        [sys.executable, "-m", "citysense", "bench", "ingest", "--quick", "--out", str(tmp_path),
         *(["--peer", "node-red"] if with_peer else [])],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.glob("ingest-*-quick.json"))
    assert len(files) == 1, proc.stdout[-2000:]
    r = json.loads(files[0].read_text())

    for phase in ("gateway", "gateway_half_rate"):
        p = r[phase]
        assert p["accepted_msg_s"] > 0 and p["readings_s"] > 0
        assert p["drained"] is True
        assert p["latency_ms"]["samples"] > 0
        for q in ("p50_ms", "p95_ms", "p99_ms"):
            assert p["latency_ms"][q] is not None
        assert {"gateway", "broker", "postgres", "load generator"} <= set(p["cpu_pct"])
    assert r["limit_copy"]["rows_s"] > 0 and r["limit_copy"]["msg_s"] > 0
    assert r["limit_passthrough"]["msg_s"] > 0
    assert r["naive"]["msg_s"] > 0 and r["naive"]["readings_stored"] > 0
    assert set(r["ratios"]) == {
        "gateway_vs_copy_limit", "gateway_vs_passthrough_limit", "gateway_vs_lower_limit", "gateway_vs_naive",
        "gateway_vs_node_red", "plain_gateway_vs_plain_copy_limit", "timescaledb_vs_plain_gateway",
    }
    # the production setup: the gateway and the load generators on their own accounts of a closed broker
    assert r["machine"]["broker"].startswith("closed") and r["gateway_settings"]["receipts"] is True
    on_timescaledb = r["machine"]["backend"] == "timescaledb"
    assert ("plain_postgresql" in r) is on_timescaledb
    measured = {
        k: v for k, v in r["ratios"].items()
        if (with_peer or k != "gateway_vs_node_red") and (on_timescaledb or "plain" not in k)
    }
    assert all(v is not None and v > 0 for v in measured.values())
    assert set(r["cpu_us_per_msg"]) >= {"gateway", "broker", "postgres"}
    if with_peer:
        peer = r["node_red"]
        assert peer["msg_s"] > 0 and peer["readings_stored"] > 0 and peer["cpu_us_per_msg"] > 0
        kill = peer["kill9"]
        assert kill["published_and_broker_acked"] > 0
        assert kill["stored_messages"] + kill["lost_messages"] >= kill["published_and_broker_acked"]

    loss = r["loss"]
    assert loss["published_and_broker_acked"] > 0
    assert loss["lost_messages"] == 0
    assert loss["readings_stored"] == loss["readings_expected"]
    assert loss["gateway_acked"] == loss["published_and_broker_acked"]
    assert loss["rejected_messages"] == 0
    assert r["targets"]["no_loss"] is True

    # `make bench`'s one table reads the same JSON: every ingest target has a row, loss met
    rows = {row.target: row for row in ingest_rows(r)}
    assert rows["0 lost (QoS 1, ack after commit, receipts on)"].met is True
    assert any(t.startswith("gateway >= 0.85x raw COPY") for t in rows)
    assert rows["TimescaleDB >= 0.9x plain PostgreSQL"].met is (None if not on_timescaledb else rows[
        "TimescaleDB >= 0.9x plain PostgreSQL"].met)
    assert summary_table(list(rows.values()), r["machine"]["backend"]).row_count == len(rows)
