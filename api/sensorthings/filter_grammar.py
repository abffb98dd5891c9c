"""The SensorThings `$filter` language (OData 4 subset of OGC 18-088 §9.3.3.5), parsed by hand.

A small recursive-descent parser, one function per production, lowest precedence first:

    expression     := or_expr
    or_expr        := and_expr ("or" and_expr)*
    and_expr       := not_expr ("and" not_expr)*
    not_expr       := "not" not_expr | comparison
    comparison     := additive [("eq"|"ne"|"gt"|"ge"|"lt"|"le") additive]
    additive       := multiplicative (("add"|"sub") multiplicative)*
    multiplicative := unary (("mul"|"div"|"mod") unary)*
    unary          := "-" unary | primary
    primary        := literal | "(" expression ")" | call | path
    call           := NAME "(" [expression ("," expression)*] ")"
    path           := NAME ("/" NAME)*
    literal        := STRING | NUMBER | "true" | "false" | "null" | DATETIME | INTERVAL
                      | "duration'" ISO-DURATION "'" | "geography'" WKT "'"

It knows nothing of entities or SQL (`filter_sql` gives the tree its meaning); anything it
cannot read is a `StaBadRequest` naming the position and what was expected there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.sensorthings.errors import StaBadRequest

COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
ADDITIVE = frozenset({"add", "sub"})
MULTIPLICATIVE = frozenset({"mul", "div", "mod"})
MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 40

_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})"
_TOKEN = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<interval>{_DATETIME}/{_DATETIME})
  | (?P<datetime>{_DATETIME})
  | (?P<typed>(?:geography|duration)'(?:[^']|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_@][A-Za-z0-9_.@]*)
  | (?P<punct>[(),/-])
    """,
    re.VERBOSE,
)
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\Z")
_WKT_POINT = re.compile(r"^\s*POINT\s*\(\s*([-+\d.eE]+)\s+([-+\d.eE]+)\s*\)\s*\Z", re.IGNORECASE)
_WKT_POLYGON = re.compile(r"^\s*POLYGON\s*\(\s*\((.*)\)\s*\)\s*\Z", re.IGNORECASE)


# -- the tree -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    """A constant. `kind` is one of: text, number, bool, null, time, interval, duration, point, polygon."""

    kind: str
    value: object


@dataclass(frozen=True)
class Path:
    """A property path such as `name`, `Thing/properties/city` or `Datastream/ObservedProperty/name`."""

    segments: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Binary:
    """`op` is a comparison (eq...le), a logical operator (and, or) or an arithmetic one (add...mod)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Negate:
    operand: Node


Node = Literal | Path | Call | Binary | Not | Negate


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


# -- literals ----------------------------------------------------------------------------------------
def parse_datetime(text: str) -> datetime:
    """An ISO 8601 instant with its offset (`2024-05-01T08:00:00Z`, `...+08:00`); naive times are refused
    because a sensor network spans no time zone by default."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StaBadRequest(f"{text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise StaBadRequest(f"date-time {text!r} has no time zone; add 'Z' or an offset such as '+08:00'")
    return value.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise StaBadRequest(f"duration {text!r} is not an ISO 8601 duration of days, hours, minutes or seconds")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _coordinate_pair(text: str) -> tuple[float, float]:
    parts = text.split()
    if len(parts) != 2:
        raise StaBadRequest(f"WKT position {text.strip()!r} must be 'longitude latitude'")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise StaBadRequest(f"WKT position {text.strip()!r} is not two numbers") from None


def parse_wkt(text: str) -> Literal:
    """A WKT POINT or single-ring POLYGON, longitude first (OGC axis order for CRS84)."""
    point = _WKT_POINT.match(text)
    if point:
        return Literal("point", _coordinate_pair(f"{point.group(1)} {point.group(2)}"))
    polygon = _WKT_POLYGON.match(text)
    if polygon:
        ring_text = polygon.group(1)
        if "(" in ring_text or ")" in ring_text:
            raise StaBadRequest("only a POLYGON with one ring (no holes) is supported in geography literals")
        ring = tuple(_coordinate_pair(p) for p in ring_text.split(","))
        if len(ring) < 4 or ring[0] != ring[-1]:
            raise StaBadRequest("a WKT POLYGON ring needs at least four positions and must end where it starts")
        return Literal("polygon", ring)
    kind = text.strip().split("(")[0].strip().upper() or "empty"
    raise StaBadRequest(f"geography {kind!r} is not supported; use a WKT POINT or POLYGON")


def _typed_literal(text: str) -> Literal:
    prefix, _, quoted = text.partition("'")
    body = quoted[:-1].replace("''", "'")
    if prefix == "duration":
        return Literal("duration", parse_duration(body))
    return parse_wkt(body)


# -- the tokenizer -------------------------------------------------------------------------------------
def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_FILTER_LENGTH:
        raise StaBadRequest(f"$filter is longer than {MAX_FILTER_LENGTH} characters")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise StaBadRequest(f"$filter: unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# -- the parser -----------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def _keyword(self, words: frozenset[str]) -> str | None:
        token = self.current
        if token.kind == "name" and token.text in words:
            self.i += 1
            return token.text
        return None

    def _expect(self, text: str) -> None:
        if self.current.text != text:
            found = self.current.text or "the end of the filter"
            raise StaBadRequest(f"$filter: expected {text!r} at position {self.current.pos}, found {found!r}")
        self.i += 1

    def parse(self) -> Node:
        node = self.expression()
        if self.current.kind != "end":
            raise StaBadRequest(
                f"$filter: unexpected {self.current.text!r} at position {self.current.pos} "
                "(an operator such as 'eq' or 'and' was expected)"
            )
        return node

    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise StaBadRequest(f"$filter nests deeper than {MAX_DEPTH} levels")
        try:
            return self.or_expr()
        finally:
            self.depth -= 1

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self._keyword(frozenset({"or"})):
            node = Binary("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self._keyword(frozenset({"and"})):
            node = Binary("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self._keyword(frozenset({"not"})):
            return Not(self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        op = self._keyword(COMPARISONS)
        if op:
            node = Binary(op, node, self.additive())
            if self.current.kind == "name" and self.current.text in COMPARISONS:
                raise StaBadRequest(f"$filter: comparisons do not chain ({op!r} then {self.current.text!r}); "
                                    "combine them with 'and'")
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while op := self._keyword(ADDITIVE):
            node = Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while op := self._keyword(MULTIPLICATIVE):
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.current.text == "-":
            self.i += 1
            operand = self.unary()
            if isinstance(operand, Literal) and operand.kind == "number":
                return Literal("number", -float(operand.value))  # type: ignore[arg-type]
            return Negate(operand)
        return self.primary()

    def primary(self) -> Node:
        token = self.current
        if token.text == "(":
            self.i += 1
            node = self.expression()
            self._expect(")")
            return node
        if token.kind in ("string", "number", "datetime", "interval", "typed"):
            return self.literal()
        if token.kind == "name":
            if token.text in ("true", "false", "null"):
                return self.literal()
            if self.tokens[self.i + 1].text == "(":
                return self.call()
            return self.path()
        found = token.text or "the end of the filter"
        raise StaBadRequest(f"$filter: expected a value, a property or a function at position {token.pos}, "
                            f"found {found!r}")

    def literal(self) -> Literal:
        token = self._advance()
        if token.kind == "string":
            return Literal("text", token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            return Literal("number", float(token.text))
        if token.kind == "datetime":
            return Literal("time", parse_datetime(token.text))
        if token.kind == "interval":
            start_text, end_text = token.text.split("/")
            start, end = parse_datetime(start_text), parse_datetime(end_text)
            if end < start:
                raise StaBadRequest(f"interval {token.text!r} ends before it starts")
            return Literal("interval", (start, end))
        if token.kind == "typed":
            return _typed_literal(token.text)
        if token.text == "null":
            return Literal("null", None)
        return Literal("bool", token.text == "true")

    def call(self) -> Call:
        name = self._advance().text
        self._expect("(")
        args: list[Node] = []
        if self.current.text != ")":
            args.append(self.expression())
            while self.current.text == ",":
                self.i += 1
                args.append(self.expression())
        self._expect(")")
        return Call(name, tuple(args))

    def path(self) -> Path:
        segments = [self._advance().text]
        while self.current.text == "/":
            self.i += 1
            if self.current.kind != "name":
                raise StaBadRequest(f"$filter: expected a property name after '/' at position {self.current.pos}")
            segments.append(self._advance().text)
        return Path(tuple(segments))


def parse_filter(text: str) -> Node:
    """The tree of one `$filter` value."""
    if not text.strip():
        raise StaBadRequest("$filter is empty")
    return _Parser(text).parse()


def parse_expression_prefix(text: str) -> tuple[Node, str]:
    """One expression from the start of `text`, and what follows it (for `$orderby` items: `expr [asc|desc]`)."""
    parser = _Parser(text)
    node = parser.additive()
    return node, text[parser.current.pos:]
