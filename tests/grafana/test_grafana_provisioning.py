"""The provisioning takes every address from a variable, and the demo's banner gives each one a value."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from devtools.demo_stack import grafana_environment

PROVISIONING = sorted((Path(__file__).resolve().parents[2] / "grafana" / "provisioning").rglob("*.yaml"))
VARIABLE = re.compile(r"\$\{(\w+)(?::-[^}]*)?\}")


def test_no_data_source_address_is_hard_coded() -> None:
    sources = [s for path in PROVISIONING for s in (yaml.safe_load(path.read_text()) or {}).get("datasources", [])]
    assert {s["type"] for s in sources} == {"grafana-postgresql-datasource", "prometheus"}
    for source in sources:
        # nothing but variables (and the colon between host and port) once they are taken out
        assert VARIABLE.sub("", source["url"]) in ("", ":"), f"{source['name']}: url {source['url']!r} is hard-coded"


def test_the_demo_banner_gives_a_value_to_every_variable_the_provisioning_reads() -> None:
    read = {name for path in PROVISIONING for name in VARIABLE.findall(path.read_text())}
    given = grafana_environment(5432, "secret", "http://127.0.0.1:9090")
    assert read == set(given)
    assert Path(given["CITYSENSE_GRAFANA_DASHBOARDS"], "school.json").is_file()
