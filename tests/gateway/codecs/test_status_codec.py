"""A status message's detector health (a parking sensor's `base_age_s`, `conf`, `relearn`): kept as sent
when well-formed, refused with the field's name when not, since the database derives columns from it."""

from __future__ import annotations

import orjson
import pytest

from contracts.records import DecodeError
from gateway.codecs.status import decode_status

TOPIC = "citysense/v1/parking/bay-0042/status"


def test_a_parking_sensor_s_detector_health_is_kept_as_sent() -> None:
    doc = {"online": True, "fw": "0.1.0", "base_age_s": 120, "conf": 0.93, "relearn": False}
    decoded = decode_status(TOPIC, orjson.dumps(doc), 1_763_785_260.0)
    assert decoded.status is not None and decoded.status["raw"] == doc


def test_a_status_without_a_baseline_yet_is_accepted() -> None:
    doc = {"online": True, "base_age_s": None, "conf": 0, "relearn": True}
    decoded = decode_status(TOPIC, orjson.dumps(doc), 1_763_785_260.0)
    assert decoded.status is not None and decoded.status["raw"] == doc


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"base_age_s": -1}, "base_age_s"),
        ({"base_age_s": 12.5}, "base_age_s"),
        ({"base_age_s": True}, "base_age_s"),
        ({"base_age_s": 2**40}, "base_age_s"),
        ({"base_age_s": "120"}, "base_age_s"),
        ({"conf": 1.5}, "conf"),
        ({"conf": -0.1}, "conf"),
        ({"conf": "high"}, "conf"),
        ({"conf": False}, "conf"),
        ({"relearn": 1}, "relearn"),
        ({"relearn": "yes"}, "relearn"),
    ],
)
def test_a_malformed_detector_field_is_refused_with_its_name(extra: dict[str, object], field: str) -> None:
    with pytest.raises(DecodeError, match=f"'{field}'"):
        decode_status(TOPIC, orjson.dumps({"online": True, **extra}), 1_763_785_260.0)
