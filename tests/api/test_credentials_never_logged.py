"""Credentials never appear in logs: real gateway and API processes started with passwords in their URLs."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.urls import REDACTED, parse_mqtt_url, redact_url
from devtools.local_broker import LocalMosquitto
from tests.api.conftest import StartApi
from tests.conftest import wait_until

PASSWORD = "hunter2-not-for-logs"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (f"mqtt://gw:{PASSWORD}@127.0.0.1:1883", "mqtt://gw:***@127.0.0.1:1883"),
        ("mqtts://gw:p%40ss@broker:8883", "mqtts://gw:***@broker:8883"),
        (f"postgresql://u:{PASSWORD}@db/city?sslmode=require&password={PASSWORD}",
         "postgresql://u:***@db/city?sslmode=require&password=***"),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("postgresql://citysense@127.0.0.1:5432/citysense", "postgresql://citysense@127.0.0.1:5432/citysense"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert PASSWORD not in redact_url(url) and "p%40ss" not in redact_url(url)
    if url.startswith("mqtt"):
        assert parse_mqtt_url(redact_url(url)).host == parse_mqtt_url(url).host


def test_gateway_log_never_shows_the_broker_password(
    mosquitto: LocalMosquitto, database_url: str, start_gateway: Any
) -> None:
    url = mosquitto.url.replace("mqtt://", f"mqtt://gw-test:{PASSWORD}@")
    gw = start_gateway(url, database_url)
    wait_until(lambda: "event=gateway_started" in gw.log(), 30, what="gateway started")
    log = gw.log()
    assert f"gw-test:{REDACTED}@" in log and PASSWORD not in log


def test_api_log_never_shows_the_database_password(database_url: str, start_api: StartApi) -> None:
    user_part, _, host_part = database_url.removeprefix("postgresql://").partition("@")
    api = start_api(f"postgresql://{user_part}:{PASSWORD}@{host_part}")  # trust auth: the password is ignored
    log = api.log()
    assert "event=api_started" in log and f"{user_part}:{REDACTED}@" in log and PASSWORD not in log
