"""The resource path of a SensorThings URL (OGC 18-088 §9.2): `Things`, `Things('box-a')`,
`Things('box-a')/Datastreams`, `Observations('…')/Datastream/Thing`, `Things('box-a')/name`,
`…/name/$value`, `…/$ref`. Only the shape is read here; `query_runner` gives it its entities."""

from __future__ import annotations

import re
from dataclasses import dataclass

from api.sensorthings.errors import StaBadRequest

_SEGMENT = re.compile(r"([A-Za-z]+)(?:\((?:'((?:[^']|'')*)'|(\d+))\))?/?")


@dataclass(frozen=True)
class Segment:
    name: str
    id: str | None


@dataclass(frozen=True)
class ResourcePath:
    segments: tuple[Segment, ...]
    value: bool = False
    """`/$value`: the raw value of the property the path ends on."""
    ref: bool = False
    """`/$ref`: the selfLinks of the addressed entities instead of the entities."""


def parse_resource_path(text: str) -> ResourcePath:
    text = text.strip("/")
    value = ref = False
    if text.endswith("/$value"):
        value, text = True, text[: -len("/$value")]
    elif text.endswith("/$ref"):
        ref, text = True, text[: -len("/$ref")]
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or m.end() == pos:
            raise StaBadRequest(f"cannot read the resource path at {text[pos:pos + 40]!r}; expected "
                                "an entity set, navigation or property name, optionally with an id in ('…')")
        quoted, number = m.group(2), m.group(3)
        ident = quoted.replace("''", "'") if quoted is not None else number
        segments.append(Segment(m.group(1), ident))
        pos = m.end()
    if not segments:
        raise StaBadRequest("the resource path is empty")
    return ResourcePath(tuple(segments), value=value, ref=ref)


def quote_id(ident: str) -> str:
    """An id as it stands in a URL path: quoted, with quotes doubled (all our ids are strings)."""
    return "'" + ident.replace("'", "''") + "'"
