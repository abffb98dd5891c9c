"""Every registry metric has SensorThings terms, so a new metric cannot ship without them."""

from __future__ import annotations

from api.sensorthings.observed_properties import TERMS
from contracts.metrics import METRICS


def test_every_registry_metric_has_a_name_a_definition_and_a_unit_definition() -> None:
    assert set(TERMS) == set(METRICS)
    for terms in TERMS.values():
        assert terms.name and terms.definition.startswith(("http://", "urn:"))
        assert terms.unit_definition.startswith("http://qudt.org/vocab/unit/")
