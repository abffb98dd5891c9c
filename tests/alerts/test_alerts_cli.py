"""`citysense alerts`: rules checked with one line, a taken metrics port refused with one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    clean.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", "citysense", "alerts", *args], env=clean, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_check_rules_accepts_the_example_and_names_the_bad_key(tmp_path: Path) -> None:
    good = run(["check-rules", str(REPO / "deploy" / "alerts" / "rules.example.toml")])
    assert good.returncode == 0 and "version 2026-12-01.1" in good.stdout, good.stdout + good.stderr
    bad = tmp_path / "rules.toml"
    bad.write_text('version = "x"\n[device_silent]\nk = "three"\n')
    refused = run(["check-rules", str(bad)])
    lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(lines) == 1 and "device_silent.k" in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_taken_metrics_port_is_one_line_naming_its_variable(database_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = run(["run"], CITYSENSE_DATABASE_URL=database_url, CITYSENSE_ALERTS_METRICS_PORT=str(port),
                   CITYSENSE_MQTT_URL="mqtt://127.0.0.1:1")
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 1 and str(port) in lines[0] and "CITYSENSE_ALERTS_METRICS_PORT" in lines[0], lines
    assert "Traceback" not in proc.stdout + proc.stderr
