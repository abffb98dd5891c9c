"""Quality flags stored with every reading, one bit each; the README documents them too.

Flags never hide data: a flagged reading is stored with its raw value, so a bureau can
filter on the bits it distrusts and a school still sees what its box measured.
"""

from __future__ import annotations

from enum import IntFlag


class Flag(IntFlag):
    OUT_OF_RANGE = 1 << 0  # outside the metric's physical range
    SENTINEL = 1 << 1  # a known "no value" marker (-1, -999, -1000.99, 65535...)
    RH_OVER_100 = 1 << 2  # relative humidity above 100 %
    NO_CLOCK = 1 << 3  # device sent ts 0 or no time: the gateway's receive time is used
    CLOCK_SKEW = 1 << 4  # device time in the future or far in the past
    STUCK = 1 << 5  # same value many times in a row
    SPIKE = 1 << 6  # far from the device's recent median
    UNKNOWN_METRIC = 1 << 7  # not in the metric registry: kept raw, not calibrated
    REPLAYED = 1 << 8  # came from the device's store-and-forward queue (a batch message)
    LEGACY_FORMAT = 1 << 9  # decoded from a legacy/partial LASS message
    UNREGISTERED_DEVICE = 1 << 10  # device not registered by an owner (open-data auto registration)
    IMPORTED = 1 << 11  # came in through `citysense import` (history), not live: its time is the file's


NO_VALUE = Flag.SENTINEL | Flag.OUT_OF_RANGE | Flag.UNKNOWN_METRIC
"""A reading with any of these bits has no calibrated `value` (NULL), live and in history:
the raw number is not a measurement of the registered quantity (a "no value" marker, a
physically impossible number, or a metric no model is defined for). `raw` keeps it."""

FLAG_DOCS: dict[Flag, str] = {
    Flag.OUT_OF_RANGE: "raw outside the metric's physical range; no calibrated value",
    Flag.SENTINEL: "sentinel value meaning 'no measurement'; no calibrated value",
    Flag.RH_OVER_100: "relative humidity above 100 %",
    Flag.NO_CLOCK: "no device clock; gateway receive time used",
    Flag.CLOCK_SKEW: "device clock in the future or far in the past",
    Flag.STUCK: "same value repeated many times (stuck sensor)",
    Flag.SPIKE: "spike against the device's recent median",
    Flag.UNKNOWN_METRIC: "metric not in the registry; stored raw, no calibrated value",
    Flag.REPLAYED: "replayed from the device's store-and-forward queue",
    Flag.LEGACY_FORMAT: "decoded from a legacy or partial LASS message",
    Flag.UNREGISTERED_DEVICE: "device not registered by an owner",
    Flag.IMPORTED: "imported history (citysense import); any age accepted, time as in the file",
}
