"""When a Datastream's expanded Observations may be read from latest_readings (migration 0013)
instead of a probe of the readings, and the per-Datastream proof that the row read there is the
one the general path (`query_runner`'s `CROSS JOIN LATERAL ... ORDER BY time DESC LIMIT 2`) returns.

The query it serves is the one Taiwan's clients send for a map:
`Datastreams?$expand=Observations($orderby=phenomenonTime desc;$top=1)`. The general path gives each
Datastream its newest Observation (its newest reading not flagged UNKNOWN_METRIC) and an
`Observations@iot.nextLink` when it has a second one.

latest_readings holds each series' newest reading, but not in every case: it never takes a reading
more than 10 minutes in the future, and a writer that bypasses the batch writer leaves it behind until
a rebuild. So its row stands in for a Datastream only when the Datastream's own `phenomenonTime`,
the [min, max] of its readings' times that the page statement has already read (two index probes
the page pays for anyway), proves it:
- max equals the row's time: no reading of the series is newer, whatever its flags or time;
- the row passes the Observation filter (NEWEST_OBSERVATIONS_SOURCE applies OBSERVATIONS_SOURCE's);
- the nextLink is set when min is earlier than the row's time (the series has a second reading).
Every other Datastream (no row, an older row, a flagged row, a parent read without phenomenonTime)
goes the general way, in one statement for all of them.

Two things are the tables' invariants, not proven per row:
- the row's raw, value, flags and calibration_id equal the reading's: the batch writer writes both
  from the same rows in one transaction and migration 0013's trigger follows every UPDATE of the
  newest reading. A writer that bypasses the batch writer and stores the same (device, metric, time)
  with other values than a later batch brings breaks it until `rebuild`.
- a second reading of a registry metric is an Observation: UNKNOWN_METRIC is set by the gateway only
  on metrics outside the registry, so it holds unless the registry later took in a metric whose older
  readings carry that flag (then the nextLink may point at an empty page).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from api.sensorthings.filter_grammar import Path
from api.sensorthings.query_options import QueryOptions

NEWEST_ORDER = (("phenomenonTime",), ("resultTime",))
"""The Observation properties that order by the reading's time (both are `{a}.time`)."""


def asks_for_newest_only(options: QueryOptions) -> bool:
    """True for exactly "the newest Observation": one `$orderby` on the time, descending, `$top=1`,
    `$skip=0` and no `$filter` (`$select`, `$count` and a nested `$expand` read the same rows)."""
    if options.top != 1 or options.skip != 0 or options.filter is not None or len(options.orderby) != 1:
        return False
    order = options.orderby[0]
    return order.descending and isinstance(order.expression, Path) and order.expression.segments in NEWEST_ORDER


def series_times(parent: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """The [min, max] of a Datastream row's readings' times, if the row was read with its phenomenonTime."""
    interval = parent.get("p:phenomenonTime")
    if isinstance(interval, list) and len(interval) == 2 and all(isinstance(t, datetime) for t in interval):
        return interval[0], interval[1]
    return None


def proven_newest(times: tuple[datetime, datetime] | None, newest: Mapping[str, Any] | None) -> bool:
    """True when the latest_readings row `newest` (an Observation row with `c:time`) is the series'
    newest Observation: no reading of the series is newer."""
    return times is not None and newest is not None and newest["c:time"] == times[1]


def has_older(times: tuple[datetime, datetime], newest: Mapping[str, Any]) -> bool:
    """The series has a reading older than its newest: the general path would set the nextLink."""
    return bool(times[0] < newest["c:time"])
