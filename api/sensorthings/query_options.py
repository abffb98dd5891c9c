"""The system query options of OGC 18-088 §9.3 ($top, $skip, $count, $orderby, $select, $expand,
$filter), parsed from a URL's query or from inside an `$expand=Nav(...;...)`.

Paging: `$top` defaults to 100 and is capped at 1000 (a larger page is refused with a sentence,
not silently cut), and a page that was cut gets an `@iot.nextLink`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from api.sensorthings.errors import StaBadRequest
from api.sensorthings.filter_grammar import Node, parse_expression_prefix, parse_filter

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_SKIP = 10_000_000
MAX_EXPAND_DEPTH = 4
SUPPORTED = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter")
_REFUSED = {
    "$resultFormat": "$resultFormat (dataArray) is not supported; ask for the JSON entities",
    "$search": "$search is not supported; use $filter with substringof()",
    "$format": "$format is not supported: this service answers JSON only",
}


@dataclass(frozen=True)
class OrderItem:
    expression: Node
    descending: bool


@dataclass(frozen=True)
class Expand:
    navigation: str
    options: QueryOptions


@dataclass(frozen=True)
class QueryOptions:
    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    orderby: tuple[OrderItem, ...] = ()
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()
    filter: Node | None = None
    raw: Mapping[str, str] = field(default_factory=dict)
    """The options as the client wrote them, for @iot.nextLink."""


def split_top_level(text: str, separator: str) -> list[str]:
    """`text` cut at `separator` outside parentheses and quoted strings."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                raise StaBadRequest(f"unbalanced ')' in {text[:80]!r}")
        elif not quoted and depth == 0 and ch == separator:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise StaBadRequest(f"unbalanced parentheses or quotes in {text[:80]!r}")
    parts.append(text[start:])
    return parts


def _integer(name: str, text: str, high: int) -> int:
    if not text.strip().isdigit():
        raise StaBadRequest(f"{name} must be a non-negative integer, not {text[:40]!r}")
    value = int(text)
    if value > high:
        raise StaBadRequest(f"{name} must be at most {high}; page with @iot.nextLink for more")
    return value


def _orderby(text: str) -> tuple[OrderItem, ...]:
    items = []
    for part in split_top_level(text, ","):
        if not part.strip():
            raise StaBadRequest("$orderby has an empty item")
        node, rest = parse_expression_prefix(part)
        direction = rest.strip().lower()
        if direction not in ("", "asc", "desc"):
            raise StaBadRequest(f"$orderby item {part.strip()!r}: expected 'asc' or 'desc' after the expression")
        items.append(OrderItem(node, direction == "desc"))
    return tuple(items)


def _select(text: str) -> tuple[str, ...]:
    names = tuple("id" if n.strip() == "@iot.id" else n.strip() for n in text.split(","))
    if any(not n for n in names):
        raise StaBadRequest("$select has an empty item")
    if any("/" in n for n in names):
        raise StaBadRequest("$select takes property names of the entity itself, not paths")
    return names


def _expand(text: str, depth: int) -> tuple[Expand, ...]:
    if depth > MAX_EXPAND_DEPTH:
        raise StaBadRequest(f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
    merged: dict[str, Expand] = {}
    for raw_item in split_top_level(text, ","):
        item = raw_item.strip()
        if not item:
            raise StaBadRequest("$expand has an empty item")
        paren = item.find("(")
        if paren >= 0:
            if not item.endswith(")"):
                raise StaBadRequest(f"$expand item {item[:80]!r} must end with ')'")
            path, inner = item[:paren], item[paren + 1:-1]
            options = parse_options(_inner_options(inner), depth + 1)
        else:
            path, options = item, QueryOptions()
        segments = [seg.strip() for seg in path.split("/")]
        if any(not seg for seg in segments):
            raise StaBadRequest(f"$expand path {path!r} has an empty segment")
        if depth + len(segments) - 1 > MAX_EXPAND_DEPTH:
            raise StaBadRequest(f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
        expand = Expand(segments[-1], options)
        for seg in reversed(segments[:-1]):  # `A/B(opts)` is `A($expand=B(opts))`
            expand = Expand(seg, QueryOptions(expand=(expand,)))
        head = expand.navigation
        merged[head] = _merge(merged[head], expand.options) if head in merged else expand
    return tuple(merged.values())


def _merge(existing: Expand, more: QueryOptions) -> Expand:
    expand = {e.navigation: e for e in existing.options.expand}
    for e in more.expand:
        expand[e.navigation] = _merge(expand[e.navigation], e.options) if e.navigation in expand else e
    base = existing.options if existing.options.raw or not more.raw else more
    return Expand(existing.navigation, QueryOptions(
        top=base.top, skip=base.skip, count=base.count, orderby=base.orderby, select=base.select,
        expand=tuple(expand.values()), filter=base.filter, raw=base.raw,
    ))


def _inner_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in split_top_level(text, ";"):
        if not part.strip():
            continue
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise StaBadRequest(f"$expand option {part.strip()[:60]!r} is not $name=value")
        options[key] = value
    return options


def parse_options(raw: Mapping[str, str], depth: int = 0) -> QueryOptions:
    """Options keyed by their `$name`; names without `$` (a client's own parameters) are ignored."""
    options = {k: v for k, v in raw.items() if k.startswith("$")}
    for key in options:
        if key in _REFUSED:
            raise StaBadRequest(_REFUSED[key])
        if key not in SUPPORTED:
            raise StaBadRequest(f"unknown query option {key!r}; supported: {', '.join(SUPPORTED)}")
    count_text = options.get("$count", "false").strip().lower()
    if count_text not in ("true", "false"):
        raise StaBadRequest(f"$count must be true or false, not {options['$count'][:20]!r}")
    return QueryOptions(
        top=_integer("$top", options["$top"], MAX_TOP) if "$top" in options else DEFAULT_TOP,
        skip=_integer("$skip", options["$skip"], MAX_SKIP) if "$skip" in options else 0,
        count=count_text == "true",
        orderby=_orderby(options["$orderby"]) if "$orderby" in options else (),
        select=_select(options["$select"]) if "$select" in options else None,
        expand=_expand(options["$expand"], depth) if "$expand" in options else (),
        filter=parse_filter(options["$filter"]) if "$filter" in options else None,
        raw=options,
    )
