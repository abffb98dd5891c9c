"""The rules file: validated at load, resolved per device and per school, the example file valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.rules import RulesError, load_rules, parse_rules
from tests.conftest import REPO


def test_builtin_defaults_are_the_documented_ones() -> None:
    book = load_rules(None)
    assert book.version == "builtin"
    rules = book.for_device("box-1", "School A", "大安區")
    assert rules.silent.k == 3.0 and rules.stuck.for_s == 3600.0
    assert book.for_school("School A").school_air.scale == "tw_moenv_2025"


def test_the_example_rules_file_loads() -> None:
    book = load_rules(REPO / "deploy" / "alerts" / "rules.example.toml")
    assert book.version and book.file.overrides and book.file.webhooks


def test_most_specific_override_wins_and_recipients_add_up() -> None:
    book = parse_rules(
        {
            "version": "7",
            "email": ["bureau@city.example"],
            "device_silent": {"k": 3},
            "overrides": [
                {"district": "大安區", "device_silent": {"k": 4}, "email": ["district@city.example"]},
                {
                    "school": "School A",
                    "device_silent": {"k": 5},
                    "school_air": {"threshold": "unhealthy"},
                    "email": ["head@school-a.example"],
                },
                {"device": "box-1", "device_silent": {"interval_s": 300}},
            ],
        }
    )
    box1 = book.for_device("box-1", "School A", "大安區")
    assert (box1.silent.k, box1.silent.interval_s) == (5, 300)
    assert box1.email == ("bureau@city.example", "district@city.example", "head@school-a.example")
    assert book.for_device("box-2", None, "大安區").silent.k == 4
    assert book.for_device("box-3", None, None).silent.k == 3
    school = book.for_school("School A", ["大安區"])
    assert school.school_air.threshold == "unhealthy" and school.school_air.threshold_band == 3
    assert "head@school-a.example" in school.email


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "version"),
        ({"version": "1", "device_silent": {"k": 0.5}}, "device_silent.k"),
        ({"version": "1", "device_silent": {"kk": 3}}, "kk"),
        ({"version": "1", "school_air": {"threshold": "scary"}}, "threshold"),
        ({"version": "1", "school_air": {"scale": "mars"}}, "unknown AQI scale"),
        ({"version": "1", "overrides": [{"device_silent": {"k": 4}}]}, "exactly one of school, district, device"),
        ({"version": "1", "overrides": [{"school": "A", "device": "b"}]}, "exactly one"),
        ({"version": "1", "overrides": [{"school": "A", "device_silent": {"lookback_s": 5}}]}, "fleet-wide"),
        ({"version": "1", "overrides": [{"school": "A", "device_silent": {"k": "many"}}]}, "override of device_silent"),
        ({"version": "1", "overrides": [{"school": "A", "email": ["not-an-address"]}]}, "e-mail"),
        ({"version": "1", "webhooks": [{"url": "ftp://x"}]}, "url"),
        ({"version": "1", "webhooks": [{"url": "http://x", "rules": ["nope"]}]}, "unknown rules"),
    ],
)
def test_invalid_rules_are_refused_with_the_key(data: dict[str, object], says: str) -> None:
    with pytest.raises(RulesError, match=says):
        parse_rules(data)


def test_unreadable_toml_is_a_rules_error(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text("version = \n")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(bad)
