"""The Prometheus rules in deploy/prometheus/rules/ load, and promtool's unit tests in
deploy/prometheus/tests/ see every alerting rule fire and stay quiet (and would notice a broken rule)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.fail("promtool is not installed: `make system-deps` (Debian's prometheus package) installs it")
    return path


def run_promtool(*args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alerting_rules() -> dict[str, dict[str, object]]:
    rules: dict[str, dict[str, object]] = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rules[rule["alert"]] = rule
    return rules


def test_promtool_check_rules_accepts_every_rule_file() -> None:
    assert RULE_FILES, "no rule file in deploy/prometheus/rules"
    result = run_promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deployed_prometheus_config_loads_the_rules_and_scrapes_gateway_and_evaluator() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"citysense-gateway", "citysense-alerts"}


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alerting_rule_waits_has_a_severity_and_says_what_is_wrong() -> None:
    for name, rule in alerting_rules().items():
        assert rule.get("for"), f"{name} has no for:"
        labels = rule.get("labels")
        assert isinstance(labels, dict) and labels.get("severity") in {"critical", "warning"}, name
        annotations = rule.get("annotations")
        assert isinstance(annotations, dict) and annotations.get("summary") and annotations.get("description"), name


def test_every_alerting_rule_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    rules = set(alerting_rules())
    assert rules - firing == set(), "alerting rules never seen firing"
    assert rules - quiet == set(), "alerting rules never seen quiet"


@pytest.mark.parametrize(("rule_file", "old", "new"), [
    ("citysense-gateway.yml", "dead_letter_ratio:rate5m > 0.05", "dead_letter_ratio:rate5m > 0.5"),
    ("citysense-alerts.yml", "> 300", "> 3000"),
])
def test_the_unit_tests_fail_when_a_threshold_is_broken(tmp_path: Path, rule_file: str, old: str, new: str) -> None:
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    broken = copy / "rules" / rule_file
    text = broken.read_text()
    assert old in text
    broken.write_text(text.replace(old, new))
    result = run_promtool("test", "rules", *sorted((copy / "tests").glob("*.yml")), cwd=copy)
    assert result.returncode != 0, result.stdout
