"""The eight SensorThings entity sets as SQL views of citysense's tables (no copy of the data).

Ids are strings, stable and derived from the natural keys, so a client can keep them:
  Thing, Location, FeatureOfInterest  the device id (`box-a`)
  Datastream                          `<device>:<metric>` (`box-a:pm25`), one per device and registry metric
                                      that has at least one reading
  Observation                         `<device>:<metric>:<unix microseconds>` (the reading's unique key)
  Sensor                              the sensor model (`devices.sensor_type`, else the device kind)
  ObservedProperty                    the registry metric name (`pm25`)
  HistoricalLocation                  none: citysense keeps one position per device, so the set is empty

Each set is a `SELECT` (its *source*) whose columns are read by two kinds of expression, both
templates over the source's alias `{a}`: `Property.sql` (what is returned, compared and ordered)
and `Property.geometry` (a PostgreSQL `point`, for geo.distance and st_within). A `Navigation`
says which columns of the parent equal which of the target, which is all that paths, `$expand`
and `$filter` paths need. Readings of metrics outside the registry (LASS `lass_*` keys) have no
ObservedProperty and are not served here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

from api.sensorthings.errors import StaNotFound
from api.sensorthings.observed_properties import observed_property_rows
from contracts.flags import Flag
from contracts.metrics import METRICS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
GEOJSON = "application/geo+json"


@dataclass(frozen=True)
class Property:
    """`kind`: text, number, time, json, geo or interval (what `filter_sql` may do with it)."""

    sql: str
    kind: str
    geometry: str | None = None
    present: Callable[[object], object] | None = None
    members: Mapping[str, str] | None = None
    """A JSON property built from columns: key -> the template of its value alone (`to_jsonb({a}.city)`),
    so `$filter=Thing/properties/city eq '臺北市'` reads one column instead of building the object
    for every row it looks at. Same values, so the same answers."""


@dataclass(frozen=True)
class Navigation:
    target: str
    many: bool
    parent_columns: tuple[str, ...]
    target_columns: tuple[str, ...]


@dataclass(frozen=True)
class EntitySet:
    name: str
    singular: str
    source: sql.Composable
    properties: dict[str, Property]
    navigations: dict[str, Navigation]
    id_columns: tuple[str, ...]
    parse_id: Callable[[str], tuple[object, ...]]
    order_columns: tuple[str, ...]

    def columns_for_keys(self) -> tuple[str, ...]:
        """Source columns every row must carry: its id parts and what its navigations join on."""
        cols = list(self.id_columns)
        for nav in self.navigations.values():
            cols.extend(c for c in nav.parent_columns if c not in cols)
        return tuple(cols)


def iso_time(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def iso_interval(value: object) -> object:
    """[start, end] of a Datastream's readings as an ISO 8601 interval, or null with no readings."""
    if isinstance(value, list) and len(value) == 2 and value[0] is not None:
        return f"{iso_time(value[0])}/{iso_time(value[1])}"
    return None


def flag_names(value: object) -> object:
    """`resultQuality`: the names of the quality flags set on the reading, or null when clean."""
    if not isinstance(value, int) or value == 0:
        return None
    return [f.name for f in Flag if f & value]


def _single_id(text: str) -> tuple[object, ...]:
    return (text,)


def _datastream_id(text: str) -> tuple[object, ...]:
    device, sep, metric = text.partition(":")
    if not sep or not device or metric not in METRICS:
        raise StaNotFound(f"no Datastream {text!r}: Datastream ids are '<device>:<metric>', e.g. 'box-a:pm25'")
    return (device, metric)


def _observation_id(text: str) -> tuple[object, ...]:
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        raise StaNotFound(f"no Observation {text!r}: Observation ids are '<device>:<metric>:<unix microseconds>'")
    return (parts[0], parts[1], EPOCH + timedelta(microseconds=int(parts[2])))


_REGISTRY_COLUMNS = ("metric", "name", "definition", "description", "unit_name", "unit_symbol", "unit_definition")
REGISTRY_PARAMS: dict[str, object] = {
    f"registry_{col}": [row[i] for row in observed_property_rows()] for i, col in enumerate(_REGISTRY_COLUMNS)
}
"""The metric registry as statement parameters (text arrays) that every statement carries: bound, not
inlined, because a unit such as '%' inside SQL text would read as a placeholder."""


def _registry_values() -> sql.Composable:
    arrays = sql.SQL(", ").join(
        sql.SQL("{}::text[]").format(sql.Placeholder(f"registry_{c}")) for c in _REGISTRY_COLUMNS
    )
    names = sql.SQL(", ").join(sql.Identifier(c) for c in _REGISTRY_COLUMNS)
    return sql.SQL("unnest({}) AS m({})").format(arrays, names)


_POINT_JSON = ("CASE WHEN {a}.lat IS NULL OR {a}.lon IS NULL THEN NULL ELSE "
               "jsonb_build_object('type', 'Point', 'coordinates', jsonb_build_array({a}.lon, {a}.lat)) END")
_POINT = "point({a}.lon, {a}.lat)"
_SITE_NAME = "coalesce({a}.site, {a}.school, {a}.device_name, {a}.id)"

THING_PROPERTIES = {"school": "school", "city": "city", "district": "district", "kind": "kind",
                    "authority": "authority", "site": "site", "owner": "owner", "retiredAt": "retired_at"}
"""A Thing's `properties`: JSON key -> the devices column it holds (nulls left out)."""
THINGS_SOURCE = sql.SQL(
    "SELECT d.device_id AS id, coalesce(d.name, d.device_id) AS name, "
    "concat_ws(', ', d.kind || ' ' || d.device_id, d.school, d.district, d.city) AS description, "
    "jsonb_strip_nulls(jsonb_build_object({})) AS properties, {} FROM devices d"
).format(
    sql.SQL(", ").join(
        sql.SQL("{}, d.{}").format(sql.Literal(k), sql.Identifier(c)) for k, c in THING_PROPERTIES.items()
    ),
    sql.SQL(", ").join(sql.SQL("d.{}").format(sql.Identifier(c)) for c in THING_PROPERTIES.values()),
)
_DEVICE_PLACES = sql.SQL(
    "SELECT d.device_id AS id, d.name AS device_name, d.site, d.school, d.lat, d.lon FROM devices d"
)
LOCATIONS_SOURCE = sql.SQL("SELECT * FROM ({}) p WHERE p.lat IS NOT NULL AND p.lon IS NOT NULL").format(
    _DEVICE_PLACES
)
HISTORICAL_LOCATIONS_SOURCE = sql.SQL(
    "SELECT NULL::text AS id, NULL::timestamptz AS time, NULL::text AS device_id WHERE false"
)
SENSORS_SOURCE = sql.SQL(
    "SELECT s.id, s.id AS name, 'Sensor model ' || s.id AS description, 'application/json' AS encoding, "
    "jsonb_build_object('model', s.id, 'calibrations', (SELECT coalesce(jsonb_agg(jsonb_build_object("
    "'id', c.id, 'metric', c.metric, 'model', c.model, 'validFrom', c.valid_from, 'validTo', c.valid_to, "
    "'fittedAt', c.fitted_at) ORDER BY c.metric, c.valid_from), '[]'::jsonb) FROM calibrations c "
    "WHERE c.device_id IS NULL AND c.sensor_type = s.id)) AS metadata "
    "FROM (SELECT DISTINCT coalesce(d.sensor_type, d.kind) AS id FROM devices d) s"
)
OBSERVED_PROPERTIES_SOURCE = sql.SQL(
    "SELECT m.metric AS id, m.name, m.definition, m.description, m.unit_symbol FROM {}"
).format(_registry_values())
DATASTREAMS_SOURCE = sql.SQL(
    "SELECT d.device_id || ':' || m.metric AS id, m.name, "
    "m.description || ' at ' || coalesce(d.name, d.device_id) AS description, "
    "jsonb_build_object('name', m.unit_name, 'symbol', m.unit_symbol, 'definition', m.unit_definition) AS unit, "
    "d.device_id, m.metric, coalesce(d.sensor_type, d.kind) AS sensor_id, d.lat, d.lon "
    "FROM devices d CROSS JOIN {} "
    # A scalar subquery with LIMIT, not EXISTS: EXISTS becomes a semi-join that the planner may run as
    # one hash of every reading (a full scan); this stays one index probe per device and metric.
    "WHERE (SELECT 1 FROM readings r WHERE r.device_id = d.device_id AND r.metric = m.metric LIMIT 1) IS NOT NULL"
).format(_registry_values())
# Outside the registry is what the gateway flagged UNKNOWN_METRIC. A row filter on that bit, not
# `metric = ANY(registry)`: an array condition on the index's second column stops the index from
# giving `ORDER BY time DESC LIMIT 1` per Datastream (a sort of the whole stream instead). The
# `flags < bit` half says the same for non-negative flags, and gives the planner a estimate from
# the column's histogram (it guesses 0.5 % for a bit test alone, and then prefers a sort).
_OBSERVATION_ROWS = "SELECT r.device_id, r.metric, r.time, r.value, r.raw, r.flags, r.calibration_id FROM {table} r " \
                    "WHERE (r.flags < {bit} OR (r.flags & {bit}) = 0)"
OBSERVATIONS_SOURCE = sql.SQL(_OBSERVATION_ROWS).format(
    table=sql.Identifier("readings"), bit=sql.Literal(int(Flag.UNKNOWN_METRIC)))
NEWEST_OBSERVATIONS_SOURCE = sql.SQL(_OBSERVATION_ROWS).format(
    table=sql.Identifier("latest_readings"), bit=sql.Literal(int(Flag.UNKNOWN_METRIC)))
"""The same Observations, newest of each series only (migration 0013's table has the readings' columns
under the same names, so every property template reads it unchanged): `newest_observation` says when
it answers for OBSERVATIONS_SOURCE."""

_ID = Property("{a}.id", "text")
_NAME = Property("{a}.name", "text")
_DESCRIPTION = Property("{a}.description", "text")

ENTITY_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        EntitySet(
            "Things", "Thing", THINGS_SOURCE,
            {"id": _ID, "name": _NAME, "description": _DESCRIPTION, "properties": Property(
                "{a}.properties", "json", members={k: f"to_jsonb({{a}}.{c})" for k, c in THING_PROPERTIES.items()}
            )},
            {
                "Locations": Navigation("Locations", True, ("id",), ("id",)),
                "HistoricalLocations": Navigation("HistoricalLocations", True, ("id",), ("device_id",)),
                "Datastreams": Navigation("Datastreams", True, ("id",), ("device_id",)),
            },
            ("id",), _single_id, ("id",),
        ),
        EntitySet(
            "Locations", "Location", LOCATIONS_SOURCE,
            {
                "id": _ID, "name": Property(_SITE_NAME, "text"),
                "description": Property("concat_ws(', ', {a}.site, {a}.school, {a}.id)", "text"),
                "encodingType": Property(f"'{GEOJSON}'::text", "text"),
                "location": Property(_POINT_JSON, "geo", geometry=_POINT),
            },
            {
                "Things": Navigation("Things", True, ("id",), ("id",)),
                "HistoricalLocations": Navigation("HistoricalLocations", True, ("id",), ("device_id",)),
            },
            ("id",), _single_id, ("id",),
        ),
        EntitySet(
            "HistoricalLocations", "HistoricalLocation", HISTORICAL_LOCATIONS_SOURCE,
            {"id": _ID, "time": Property("{a}.time", "time", present=iso_time)},
            {
                "Thing": Navigation("Things", False, ("device_id",), ("id",)),
                "Locations": Navigation("Locations", True, ("device_id",), ("id",)),
            },
            ("id",), _single_id, ("id",),
        ),
        EntitySet(
            "Sensors", "Sensor", SENSORS_SOURCE,
            {
                "id": _ID, "name": _NAME, "description": _DESCRIPTION,
                "encodingType": Property("{a}.encoding", "text"), "metadata": Property("{a}.metadata", "json"),
            },
            {"Datastreams": Navigation("Datastreams", True, ("id",), ("sensor_id",))},
            ("id",), _single_id, ("id",),
        ),
        EntitySet(
            "ObservedProperties", "ObservedProperty", OBSERVED_PROPERTIES_SOURCE,
            {
                "id": _ID, "name": _NAME, "definition": Property("{a}.definition", "text"),
                "description": _DESCRIPTION,
                "properties": Property("jsonb_build_object('unitSymbol', {a}.unit_symbol)", "json"),
            },
            {"Datastreams": Navigation("Datastreams", True, ("id",), ("metric",))},
            ("id",), _single_id, ("id",),
        ),
        EntitySet(
            "Datastreams", "Datastream", DATASTREAMS_SOURCE,
            {
                "id": _ID, "name": _NAME, "description": _DESCRIPTION,
                "unitOfMeasurement": Property("{a}.unit", "json"),
                "observationType": Property(f"'{OM_MEASUREMENT}'::text", "text"),
                "observedArea": Property(_POINT_JSON, "geo", geometry=_POINT),
                # Two probes of the (device_id, metric, time) index, first and last: no scan.
                "phenomenonTime": Property(
                    "ARRAY[(SELECT min(r.time) FROM readings r WHERE r.device_id = {a}.device_id "
                    "AND r.metric = {a}.metric), (SELECT max(r.time) FROM readings r "
                    "WHERE r.device_id = {a}.device_id AND r.metric = {a}.metric)]",
                    "interval", present=iso_interval,
                ),
                "properties": Property("jsonb_build_object('metric', {a}.metric, 'deviceId', {a}.device_id)", "json"),
            },
            {
                "Thing": Navigation("Things", False, ("device_id",), ("id",)),
                "Sensor": Navigation("Sensors", False, ("sensor_id",), ("id",)),
                "ObservedProperty": Navigation("ObservedProperties", False, ("metric",), ("id",)),
                "Observations": Navigation("Observations", True, ("device_id", "metric"), ("device_id", "metric")),
            },
            ("device_id", "metric"), _datastream_id, ("device_id", "metric"),
        ),
        EntitySet(
            "Observations", "Observation", OBSERVATIONS_SOURCE,
            {
                "id": Property(
                    "{a}.device_id || ':' || {a}.metric || ':' || "
                    "(extract(epoch FROM {a}.time) * 1000000)::bigint::text", "text"
                ),
                "phenomenonTime": Property("{a}.time", "time", present=iso_time),
                "resultTime": Property("{a}.time", "time", present=iso_time),
                "result": Property("{a}.value", "number"),
                "resultQuality": Property("{a}.flags", "number", present=flag_names),
                "parameters": Property(
                    "jsonb_build_object('raw', {a}.raw, 'flags', {a}.flags, 'calibrationId', {a}.calibration_id)",
                    "json",
                ),
            },
            {
                "Datastream": Navigation("Datastreams", False, ("device_id", "metric"), ("device_id", "metric")),
                "FeatureOfInterest": Navigation("FeaturesOfInterest", False, ("device_id",), ("id",)),
            },
            ("device_id", "metric", "time"), _observation_id, ("device_id", "metric", "time"),
        ),
        EntitySet(
            "FeaturesOfInterest", "FeatureOfInterest", _DEVICE_PLACES,
            {
                "id": _ID, "name": Property(_SITE_NAME, "text"),
                "description": Property("concat_ws(', ', 'site of ' || {a}.id, {a}.school)", "text"),
                "encodingType": Property(f"'{GEOJSON}'::text", "text"),
                "feature": Property(_POINT_JSON, "geo", geometry=_POINT),
            },
            {"Observations": Navigation("Observations", True, ("id",), ("device_id",))},
            ("id",), _single_id, ("id",),
        ),
    )
}


def entity_set(name: str) -> EntitySet:
    try:
        return ENTITY_SETS[name]
    except KeyError:
        raise StaNotFound(f"no entity set {name!r}; this service has {', '.join(ENTITY_SETS)}") from None


def property_sql(template: str, alias: sql.Identifier) -> sql.Composable:
    """A property template over a source alias; templates are constants of this module, never user text."""
    return sql.SQL(template.replace("{a}", "{alias}")).format(alias=alias)
