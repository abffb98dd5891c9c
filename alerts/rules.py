"""The alert rules as data: a versioned TOML file, validated here, resolved per device and per school.

A rules file (deploy/alerts/rules.example.toml documents every key) has a `version` string
(recorded with every alert, so an alert says which rules raised it), one table per rule with
the fleet-wide defaults, the webhooks, and `[[overrides]]`, each naming one `school`, one
`district` or one `device` and changing some keys of some rules there, or adding e-mail
recipients. A device takes the defaults, then its district's override, then its school's,
then its own (the most specific wins); a school takes the defaults, then the overrides of the
districts its boxes stand in, then its own. Windows that decide what the evaluator reads from
the database (`window_s`, `lookback_s`...) are fleet-wide: an override may not change them.

Unknown keys, wrong types, an override naming nothing or two things: a RulesError with the
path of the bad key, at load time, never a surprise at 3 a.m.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from calibration.aqi import SCALES, get_scale

R = TypeVar("R", bound="_Rule")

RULE_NAMES = ("device_silent", "device_stuck", "implausible", "school_air", "hotspot", "pipeline", "parking_relearn")
"""Every rule the evaluator knows; an alert's `rule` column holds one of them."""


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the text names the key."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SilentRule(_Rule):
    """No reading for k x the device's interval (configured `interval_s`, else observed, else default)."""

    enabled: bool = True
    k: float = Field(3.0, gt=1, le=100)
    interval_s: float | None = Field(None, gt=0, le=86_400, description="the device's configured interval")
    default_interval_s: float = Field(60.0, gt=0, le=86_400)
    lookback_s: float = Field(2 * 86_400, gt=0, le=30 * 86_400)


class StuckRule(_Rule):
    """The newest reading of a metric carries STUCK and the run of STUCK readings is older than `for_s`."""

    enabled: bool = True
    for_s: float = Field(3600.0, gt=0, le=7 * 86_400)


class RelearnRule(_Rule):
    """A parking sensor's newest status says its detector's baseline needs confirming or
    re-learning (`relearn`: a first boot, an offset step taken on trust, a level stuck between
    the thresholds, no empty bay seen for a week): its occupancy is not to be trusted blindly."""

    enabled: bool = True


class ImplausibleRule(_Rule):
    """Quality-flag rate, humidity pinned at 100 %, or far from the neighbours' median for hours."""

    enabled: bool = True
    window_s: float = Field(3600.0, gt=0, le=86_400)
    flag_rate: float = Field(0.2, gt=0, le=1)
    min_readings: int = Field(10, ge=1, le=100_000)
    rh_window_s: float = Field(6 * 3600.0, gt=0, le=7 * 86_400)
    rh_pinned_at: float = Field(99.5, gt=0, le=100)
    rh_pinned_share: float = Field(0.95, gt=0, le=1)
    neighbour_hours: int = Field(3, ge=1, le=12)
    neighbour_radius_km: float = Field(3.0, gt=0, le=50)
    max_neighbours: int = Field(8, ge=2, le=50)
    min_neighbours: int = Field(2, ge=1, le=50)
    ratio_threshold: float = Field(0.5, gt=0, le=10)
    abs_threshold: float = Field(8.0, gt=0, le=1000)
    neighbour_side: Literal["below", "both"] = Field(
        "below", description="below: only a box reading under its neighbours (a box above them is a hotspot)"
    )


class SchoolAirRule(_Rule):
    """The school's real-time AQI enters a band at or above `threshold` (a category key)."""

    enabled: bool = True
    scale: str = "tw_moenv_2025"
    threshold: str = "usg"
    hysteresis_aqi: int = Field(5, ge=0, le=100)

    @field_validator("scale")
    @classmethod
    def _known_scale(cls, value: str) -> str:
        if value not in SCALES:
            raise ValueError(f"unknown AQI scale {value!r}; known: {sorted(SCALES)}")
        return value

    @model_validator(mode="after")
    def _known_threshold(self) -> SchoolAirRule:
        keys = [c.key for c in get_scale(self.scale).categories]
        if self.threshold not in keys:
            raise ValueError(f"threshold {self.threshold!r} is not a category of {self.scale}: {keys}")
        return self

    @property
    def threshold_band(self) -> int:
        """The index of the threshold category in the scale (0 = good)."""
        return [c.key for c in get_scale(self.scale).categories].index(self.threshold)


class HotspotRule(_Rule):
    """Above the distance-weighted median of the neighbours by `excess_ugm3` in each of `hours` hours."""

    enabled: bool = True
    hours: int = Field(3, ge=1, le=12)
    radius_km: float = Field(3.0, gt=0, le=50)
    min_neighbours: int = Field(3, ge=1, le=50)
    max_neighbours: int = Field(12, ge=1, le=100)
    excess_ugm3: float = Field(10.0, gt=0, le=1000)
    distance_scale_km: float = Field(1.0, gt=0, le=50)


class PipelineRule(_Rule):
    """Fleet-wide: newest stored reading too old, too many dead letters, too many boxes silent."""

    enabled: bool = True
    ingest_lag_s: float = Field(300.0, gt=0, le=86_400)
    dead_letter_window_s: float = Field(900.0, gt=0, le=86_400)
    dead_letter_ratio: float = Field(0.05, gt=0, le=1)
    dead_letter_min: int = Field(20, ge=1)
    silent_share: float = Field(0.2, gt=0, le=1)
    silent_min_devices: int = Field(5, ge=1)


class Webhook(_Rule):
    """A receiver of every transition of the listed rules (all rules when `rules` is empty)."""

    url: str = Field(pattern=r"^https?://[^\s]+$")
    rules: tuple[str, ...] = ()
    schools: tuple[str, ...] = ()

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(RULE_NAMES))
        if unknown:
            raise ValueError(f"unknown rules {unknown}; known: {list(RULE_NAMES)}")
        return value

    def wants(self, rule: str, school: str | None) -> bool:
        return (not self.rules or rule in self.rules) and (not self.schools or school in self.schools)


_FLEET_WIDE = {
    "device_silent": ("lookback_s",),
    "device_stuck": (),
    "implausible": ("window_s", "rh_window_s", "rh_pinned_at", "neighbour_hours"),
    "hotspot": ("hours",),
    "parking_relearn": (),
}

_SECTIONS: dict[str, type[_Rule]] = {
    "device_silent": SilentRule,
    "device_stuck": StuckRule,
    "implausible": ImplausibleRule,
    "school_air": SchoolAirRule,
    "hotspot": HotspotRule,
    "parking_relearn": RelearnRule,
}


class Override(_Rule):
    """Changes for one school, district or device; keys as in the rule tables."""

    school: str | None = Field(None, min_length=1, max_length=200)
    district: str | None = Field(None, min_length=1, max_length=100)
    device: str | None = Field(None, min_length=1, max_length=64)
    email: tuple[str, ...] = ()
    device_silent: dict[str, Any] = Field(default_factory=dict)
    device_stuck: dict[str, Any] = Field(default_factory=dict)
    implausible: dict[str, Any] = Field(default_factory=dict)
    school_air: dict[str, Any] = Field(default_factory=dict)
    hotspot: dict[str, Any] = Field(default_factory=dict)
    parking_relearn: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_subject(self) -> Override:
        named = [k for k in ("school", "district", "device") if getattr(self, k) is not None]
        if len(named) != 1:
            raise ValueError(f"an override names exactly one of school, district, device (got {named or 'none'})")
        for section, fixed in _FLEET_WIDE.items():
            bad = sorted(set(getattr(self, section)) & set(fixed))
            if bad:
                raise ValueError(f"{section}.{bad[0]} is fleet-wide and cannot be overridden")
        return self

    @property
    def level(self) -> Literal["school", "district", "device"]:
        return "school" if self.school is not None else "district" if self.district is not None else "device"


_EMAIL = r"^[^@\s]+@[^@\s]+$"


class RuleFile(_Rule):
    """The whole file as written."""

    version: str = Field(min_length=1, max_length=64)
    email: tuple[str, ...] = ()
    device_silent: SilentRule = SilentRule()
    device_stuck: StuckRule = StuckRule()
    implausible: ImplausibleRule = ImplausibleRule()
    school_air: SchoolAirRule = SchoolAirRule()
    hotspot: HotspotRule = HotspotRule()
    pipeline: PipelineRule = PipelineRule()
    parking_relearn: RelearnRule = RelearnRule()
    webhooks: tuple[Webhook, ...] = ()
    overrides: tuple[Override, ...] = ()

    @field_validator("email")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_emails(value)


def _check_emails(value: Iterable[str]) -> tuple[str, ...]:
    out = tuple(value)
    for address in out:
        if not re.match(_EMAIL, address):
            raise ValueError(f"{address!r} is not an e-mail address")
    return out


@dataclass(frozen=True)
class DeviceRules:
    """What applies to one device after the overrides."""

    silent: SilentRule
    stuck: StuckRule
    implausible: ImplausibleRule
    hotspot: HotspotRule
    relearn: RelearnRule
    email: tuple[str, ...]


@dataclass(frozen=True)
class SchoolRules:
    """What applies to one school after the overrides."""

    school_air: SchoolAirRule
    email: tuple[str, ...]


@dataclass
class RuleBook:
    """A validated rules file with the per-device and per-school resolution cached."""

    file: RuleFile
    _device_cache: dict[tuple[str, str | None, str | None], DeviceRules] = field(default_factory=dict)
    _school_cache: dict[tuple[str, tuple[str, ...]], SchoolRules] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.file.version

    @cached_property
    def _by_level(self) -> dict[tuple[str, str], list[Override]]:
        out: dict[tuple[str, str], list[Override]] = {}
        for item in self.file.overrides:
            name = item.school or item.district or item.device
            assert name is not None
            out.setdefault((item.level, name), []).append(item)
        return out

    def _chain(self, pairs: Iterable[tuple[str, str | None]]) -> list[Override]:
        chain: list[Override] = []
        for level, name in pairs:
            if name is not None:
                chain.extend(self._by_level.get((level, name), ()))
        return chain

    def for_device(self, device_id: str, school: str | None, district: str | None) -> DeviceRules:
        key = (device_id, school, district)
        found = self._device_cache.get(key)
        if found is None:
            chain = self._chain((("district", district), ("school", school), ("device", device_id)))
            found = DeviceRules(
                silent=_merge(self.file.device_silent, chain, "device_silent"),
                stuck=_merge(self.file.device_stuck, chain, "device_stuck"),
                implausible=_merge(self.file.implausible, chain, "implausible"),
                hotspot=_merge(self.file.hotspot, chain, "hotspot"),
                relearn=_merge(self.file.parking_relearn, chain, "parking_relearn"),
                email=_emails_of(self.file.email, chain),
            )
            self._device_cache[key] = found
        return found

    def for_school(self, school: str, districts: Iterable[str] = ()) -> SchoolRules:
        key = (school, tuple(sorted(set(districts))))
        found = self._school_cache.get(key)
        if found is None:
            chain = self._chain([*(("district", d) for d in key[1]), ("school", school)])
            found = SchoolRules(_merge(self.file.school_air, chain, "school_air"), _emails_of(self.file.email, chain))
            self._school_cache[key] = found
        return found

    def webhooks_for(self, rule: str, school: str | None) -> list[str]:
        return [hook.url for hook in self.file.webhooks if hook.wants(rule, school)]


def _merge(base: R, chain: list[Override], section: str) -> R:
    patch: dict[str, Any] = {}
    for item in chain:
        patch.update(getattr(item, section))
    if not patch:
        return base
    try:
        return type(base).model_validate({**base.model_dump(), **patch})
    except ValidationError as exc:
        raise RulesError(f"override of {section}: {_first_error(exc)}") from None


def _emails_of(base: tuple[str, ...], chain: list[Override]) -> tuple[str, ...]:
    out = list(base)
    for item in chain:
        out.extend(a for a in item.email if a not in out)
    return tuple(out)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err.get("loc", ())) or "file"
    return f"{where}: {err.get('msg', 'invalid')}"


def parse_rules(data: Mapping[str, Any]) -> RuleBook:
    """A RuleBook from parsed TOML, every override checked against its rule at once."""
    try:
        book = RuleBook(RuleFile.model_validate(dict(data)))
    except ValidationError as exc:
        raise RulesError(_first_error(exc)) from None
    for item in book.file.overrides:
        try:
            _check_emails(item.email)
        except ValueError as exc:
            raise RulesError(f"override {item.level} {item.school or item.district or item.device}: {exc}") from None
        for section in _SECTIONS:
            _merge(getattr(book.file, section), [item], section)
    return book


def load_rules(path: Path | None) -> RuleBook:
    """The rules in `path` (TOML), or the built-in defaults (version "builtin") when None."""
    if path is None:
        return parse_rules({"version": "builtin"})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"cannot read rules file {path}: {exc}") from None
    return parse_rules(data)
