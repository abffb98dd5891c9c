"""The provisioning takes every address from a variable, and the demo's banner gives each one a value."""

from __future__ import annotations

import re
from pathlib import Path

from devtools.demo_stack import grafana_environment

PROVISIONING_DIR = Path(__file__).resolve().parents[2] / "grafana" / "provisioning"
PROVISIONING = sorted(PROVISIONING_DIR.rglob("*.yaml"))
VARIABLE = re.compile(r"\$\{(\w+)(?::-[^}]*)?\}")


def test_no_data_source_address_is_hard_coded() -> None:
    # read as lines (no YAML library is a dependency): each data source has one `url:`
    text = (PROVISIONING_DIR / "datasources" / "citysense.yaml").read_text()
    urls = re.findall(r"^\s+url:\s*(\S+)\s*$", text, re.MULTILINE)
    assert len(urls) == len(re.findall(r"^\s+- name:", text, re.MULTILINE)) == 2
    for url in urls:
        # nothing but variables (and the colon between host and port) once they are taken out
        assert VARIABLE.sub("", url) in ("", ":"), f"url {url!r} is hard-coded"


def test_the_demo_banner_gives_a_value_to_every_variable_the_provisioning_reads() -> None:
    read = {name for path in PROVISIONING for name in VARIABLE.findall(path.read_text())}
    given = grafana_environment(5432, "secret", "http://127.0.0.1:9090")
    assert read == set(given)
    assert Path(given["CITYSENSE_GRAFANA_DASHBOARDS"], "school.json").is_file()
