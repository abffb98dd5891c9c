"""What each registry metric means to a SensorThings client: its display name, a definition URI
and the unit's name and definition (the symbol stays `contracts.metrics`' own).

Keyed by the registry's names; tests/api/sensorthings/test_observed_properties.py fails the day
a metric is added to `contracts.metrics` without an entry here. Pollutant definitions are the
EEA air-quality vocabulary (the codes Europe's AQ e-Reporting uses), physical quantities the
CF standard names, units QUDT; quantities of our own hardware get a citysense URN.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.metrics import METRICS, MetricSpec

_EEA = "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/"
_CF = "http://vocab.nerc.ac.uk/standard_name/"
_QUDT = "http://qudt.org/vocab/unit/"
_OWN = "urn:citysense:def:metric:"


@dataclass(frozen=True)
class ObservedPropertyTerms:
    name: str
    definition: str
    description: str
    unit_name: str
    unit_definition: str


TERMS: dict[str, ObservedPropertyTerms] = {
    "pm1": ObservedPropertyTerms("PM1", _EEA + "6002", "Particulate matter below 1 µm, mass concentration",
                                 "microgram per cubic metre", _QUDT + "MicroGM-PER-M3"),
    "pm25": ObservedPropertyTerms("PM2.5", _EEA + "6001", "Particulate matter below 2.5 µm, mass concentration",
                                  "microgram per cubic metre", _QUDT + "MicroGM-PER-M3"),
    "pm10": ObservedPropertyTerms("PM10", _EEA + "5", "Particulate matter below 10 µm, mass concentration",
                                  "microgram per cubic metre", _QUDT + "MicroGM-PER-M3"),
    "t": ObservedPropertyTerms("Temperature", _CF + "air_temperature/", "Air temperature at the box",
                               "degree Celsius", _QUDT + "DEG_C"),
    "rh": ObservedPropertyTerms("Relative humidity", _CF + "relative_humidity/", "Relative humidity of the air",
                                "percent", _QUDT + "PERCENT"),
    "p": ObservedPropertyTerms("Air pressure", _CF + "air_pressure/", "Barometric air pressure",
                               "hectopascal", _QUDT + "HectoPA"),
    "co2": ObservedPropertyTerms("CO2", _EEA + "71", "Carbon dioxide, mole fraction in air",
                                 "part per million", _QUDT + "PPM"),
    "occupied": ObservedPropertyTerms("Occupancy", _OWN + "occupied", "Parking bay occupied (1) or free (0)",
                                      "dimensionless", _QUDT + "UNITLESS"),
    "mag": ObservedPropertyTerms("Magnetic deviation", _OWN + "mag",
                                 "Magnetic field deviation from the learnt empty-bay baseline",
                                 "microtesla", _QUDT + "MicroT"),
    "mag_base": ObservedPropertyTerms("Magnetic baseline", _OWN + "mag_base",
                                      "Learnt magnetic field of the empty bay", "microtesla", _QUDT + "MicroT"),
    "batt_mv": ObservedPropertyTerms("Battery voltage", _OWN + "batt_mv", "Supply voltage of the device",
                                     "millivolt", _QUDT + "MilliV"),
    "rssi": ObservedPropertyTerms("Radio signal strength", _OWN + "rssi", "Received signal strength at the device",
                                  "decibel-milliwatt", _QUDT + "DeciB_M"),
}


def observed_property_rows() -> list[tuple[str, str, str, str, str, str, str]]:
    """(metric, name, definition, description, unit name, unit symbol, unit definition), registry order."""
    rows = []
    for metric, spec in METRICS.items():
        terms = TERMS[metric]
        rows.append(_row(metric, spec, terms))
    return rows


def _row(metric: str, spec: MetricSpec, terms: ObservedPropertyTerms) -> tuple[str, str, str, str, str, str, str]:
    return (metric, terms.name, terms.definition, terms.description, terms.unit_name, spec.unit,
            terms.unit_definition)
