"""Rows to SensorThings JSON: `@iot.id`, `@iot.selfLink`, the properties in the order of the
entity model, and one `<Nav>@iot.navigationLink` per navigation property (OGC 18-088 §9.2.2).

Rows carry properties under `p:<name>` and the id under `k:id` (see `query_runner`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode

from api.sensorthings.entity_model import EntitySet
from api.sensorthings.resource_path import quote_id

JsonObject = dict[str, Any]
_ID_SAFE = "':@$!*,;="


def self_link(base: str, entity: EntitySet, ident: str) -> str:
    return f"{base}/{entity.name}({quote(quote_id(ident), safe=_ID_SAFE)})"


def entity_json(entity: EntitySet, row: Mapping[str, Any], select: tuple[str, ...] | None, base: str) -> JsonObject:
    ident = str(row["k:id"])
    link = self_link(base, entity, ident)
    out: JsonObject = {}
    if select is None or "id" in select:
        out["@iot.id"] = ident
        out["@iot.selfLink"] = link
    for name, prop in entity.properties.items():
        if name == "id" or (select is not None and name not in select):
            continue
        value = row[f"p:{name}"]
        out[name] = prop.present(value) if prop.present else value
    for nav in entity.navigations:
        if select is None or nav in select:
            out[f"{nav}@iot.navigationLink"] = f"{link}/{nav}"
    return out


def next_link(url: str, raw: Mapping[str, str], top: int, skip: int) -> str:
    """The same request one page further on: every option kept, `$skip` moved by `$top`."""
    return f"{url}?{_next_query(tuple(raw.items()), top, skip)}"


@lru_cache(maxsize=256)
def _next_query(raw: tuple[tuple[str, str], ...], top: int, skip: int) -> str:
    """The query of `next_link`, encoded once per set of options: an expanded collection asks for
    the same one for every parent (100 Datastreams, 100 identical Observations queries)."""
    options = dict(raw)
    options["$top"] = str(top)
    options["$skip"] = str(skip + top)
    return urlencode(options, quote_via=quote, safe="$")
