"""A parsed `$filter` (or `$orderby` item) compiled to SQL over one entity set's source.

Every value that came from the client is a named placeholder bound in `SqlParams`; the SQL
text is made only of this module's constants and `entity_model`'s templates, so no client
text ever becomes SQL. Expressions are typed (text, number, time, bool, json, geo...), which
is what turns a type mistake into a sentence (400) instead of a PostgreSQL error (500).

Meanings chosen where OGC 18-088 leaves them to the server:
  - JSON properties (`properties/city`) take the type of what they are compared with;
  - an instant compared with an ISO 8601 interval `a/b`: `eq` = within [a, b], `ne` = outside,
    `lt` = before a, `le` = not after b, `gt` = after b, `ge` = not before a;
  - geometry is the WGS 84 point of the device; `geo.distance` is planar, in degrees (as
    FROST-Server's PostGIS geometry gives), `st_within` / `st_intersects` take a WKT POLYGON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from psycopg import sql
from psycopg.sql import Composable

from api.sensorthings.entity_model import ENTITY_SETS, REGISTRY_PARAMS, EntitySet, property_sql
from api.sensorthings.errors import StaBadRequest
from api.sensorthings.filter_grammar import Binary, Call, Literal, Negate, Node, Not, Path, parse_datetime

_SQL_COMPARISON = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_ORDERABLE = frozenset({"text", "number", "time", "bool", "json"})
_DATE_PARTS = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute"}
_UNSUPPORTED_FUNCTIONS = {
    "date": "date() is not supported; compare the time with two ISO 8601 instants instead",
    "time": "time() is not supported; use hour(), minute() and second()",
    "totaloffsetminutes": "totaloffsetminutes() is not supported: every time here is UTC (offset 0)",
    "mindatetime": "mindatetime() is not supported", "maxdatetime": "maxdatetime() is not supported",
    "geo.length": "geo.length() is not supported: every geometry here is a point",
    "st_touches": "st_touches() is not supported; use st_within or st_intersects with a POLYGON",
    "st_overlaps": "st_overlaps() is not supported; use st_within or st_intersects with a POLYGON",
    "st_crosses": "st_crosses() is not supported; use st_within or st_intersects with a POLYGON",
    "st_relate": "st_relate() is not supported; use st_within or st_intersects with a POLYGON",
}


class SqlParams:
    """The placeholders of one statement, and fresh table aliases for its subqueries."""

    def __init__(self) -> None:
        self.values: dict[str, object] = dict(REGISTRY_PARAMS)
        self._aliases = 0

    def bind(self, value: object, cast: str | None = None) -> sql.Composable:
        name = f"p{len(self.values) - len(REGISTRY_PARAMS)}"
        self.values[name] = value
        if cast is None:
            return sql.Placeholder(name)
        return sql.SQL("{}::{}").format(sql.Placeholder(name), sql.SQL(cast))

    def alias(self) -> sql.Identifier:
        self._aliases += 1
        return sql.Identifier(f"e{self._aliases}")


@dataclass(frozen=True)
class Typed:
    sql: Composable
    kind: str
    geometry: Composable | None = None
    literal: object = None
    is_literal: bool = False


class ExpressionCompiler:
    """Compiles expressions over `entity`, whose source is aliased `alias` in the statement."""

    def __init__(self, entity: EntitySet, alias: sql.Identifier, params: SqlParams) -> None:
        self.entity = entity
        self.alias = alias
        self.params = params

    # -- entry points -------------------------------------------------------------------------------
    def condition(self, node: Node) -> sql.Composable:
        typed = self.value(node)
        if typed.kind == "json":
            typed = self._coerce(typed, "bool")
        if typed.kind != "bool":
            raise StaBadRequest(f"$filter must be a condition (true or false), not a {typed.kind} value")
        return typed.sql

    def orderable(self, node: Node) -> sql.Composable:
        typed = self.value(node)
        if typed.kind not in _ORDERABLE:
            raise StaBadRequest(f"cannot order by a {typed.kind} value")
        return typed.sql

    def value(self, node: Node) -> Typed:
        if isinstance(node, Literal):
            return self._literal(node)
        if isinstance(node, Path):
            return self._path(node.segments, self.entity, self.alias)
        if isinstance(node, Not):
            return Typed(sql.SQL("(NOT {})").format(self._bool(self.value(node.operand), "not")), "bool")
        if isinstance(node, Negate):
            operand = self.as_number(self.value(node.operand), "-")
            return Typed(sql.SQL("(-{})").format(operand.sql), "number")
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    # -- leaves ---------------------------------------------------------------------------------------
    def _literal(self, node: Literal) -> Typed:
        p = self.params
        value = node.value
        if node.kind == "null":
            return Typed(sql.SQL("NULL"), "null", is_literal=True)
        if node.kind == "text":
            return Typed(p.bind(value, "text"), "text", literal=value, is_literal=True)
        if node.kind == "number":
            return Typed(p.bind(value, "float8"), "number", literal=value, is_literal=True)
        if node.kind == "bool":
            return Typed(p.bind(value, "boolean"), "bool", literal=value, is_literal=True)
        if node.kind == "time":
            return Typed(p.bind(value, "timestamptz"), "time", literal=value, is_literal=True)
        if node.kind == "duration":
            return Typed(p.bind(value, "interval"), "duration", literal=value, is_literal=True)
        if node.kind == "interval":
            return Typed(sql.SQL("NULL"), "interval literal", literal=value, is_literal=True)
        if node.kind == "point":
            x, y = cast(tuple[float, float], value)
            point = sql.SQL("point({}, {})").format(p.bind(x, "float8"), p.bind(y, "float8"))
            return Typed(point, "point", geometry=point, is_literal=True)
        ring = ",".join(f"({float(x)!r},{float(y)!r})" for x, y in cast(tuple[tuple[float, float], ...], value))
        polygon = p.bind(f"({ring})", "polygon")
        return Typed(polygon, "polygon", geometry=polygon, is_literal=True)

    def _path(self, segments: tuple[str, ...], entity: EntitySet, alias: sql.Identifier) -> Typed:
        head = "id" if segments[0] == "@iot.id" else segments[0]
        nav = entity.navigations.get(head)
        if nav is not None:
            return self._through(nav.target, nav.many, nav.parent_columns, nav.target_columns, segments, entity, alias)
        prop = entity.properties.get(head)
        if prop is None:
            known = ", ".join([*entity.properties, *entity.navigations])
            raise StaBadRequest(f"{entity.singular} has no property {head!r}; it has {known}")
        expr = property_sql(prop.sql, alias)
        geometry = property_sql(prop.geometry, alias) if prop.geometry else None
        if len(segments) == 1:
            if prop.kind == "interval":
                raise StaBadRequest(f"{entity.singular}/{head} is a time interval and cannot be filtered or "
                                    "ordered here; filter the Observations' phenomenonTime instead")
            return Typed(expr, prop.kind, geometry=geometry)
        if prop.kind != "json":
            raise StaBadRequest(f"{entity.singular}/{head} is not a JSON object; '{'/'.join(segments)}' goes nowhere")
        keys = list(segments[1:])
        if len(keys) == 1 and prop.members is not None and keys[0] in prop.members:
            return Typed(property_sql(prop.members[keys[0]], alias), "json")
        return Typed(sql.SQL("({} #> {})").format(expr, self.params.bind(keys, "text[]")), "json")

    def _through(self, target_name: str, many: bool, parent_cols: tuple[str, ...], target_cols: tuple[str, ...],
                 segments: tuple[str, ...], entity: EntitySet, alias: sql.Identifier) -> Typed:
        nav_name = segments[0]
        if many:
            raise StaBadRequest(f"filter path {'/'.join(segments)!r} crosses the collection {entity.singular}/"
                                f"{nav_name}; only single-valued navigation (e.g. Datastream/Thing) can be followed")
        if len(segments) == 1:
            raise StaBadRequest(f"{entity.singular}/{nav_name} is an entity; compare one of its properties, "
                                f"e.g. {nav_name}/name")
        target = ENTITY_SETS[target_name]
        sub = self.params.alias()
        inner = self._path(segments[1:], target, sub)
        join = sql.SQL(" AND ").join(
            sql.SQL("{}.{} = {}.{}").format(sub, sql.Identifier(t), alias, sql.Identifier(p))
            for p, t in zip(parent_cols, target_cols, strict=True)
        )

        def scalar(expr: sql.Composable) -> sql.Composable:
            return sql.SQL("(SELECT {} FROM ({}) AS {} WHERE {} LIMIT 1)").format(expr, target.source, sub, join)

        geometry = scalar(inner.geometry) if inner.geometry is not None else None
        return Typed(scalar(inner.sql), inner.kind, geometry=geometry)

    # -- coercions ------------------------------------------------------------------------------------
    def _coerce(self, typed: Typed, kind: str) -> Typed:
        """A JSON value read as `kind` (null when it is not one); other kinds are left as they are."""
        if typed.kind != "json":
            return typed
        text = sql.SQL("({} #>> '{{}}')").format(typed.sql)
        if kind == "text":
            return Typed(text, "text")
        if kind in ("number", "bool"):
            json_type, cast = ("number", "float8") if kind == "number" else ("boolean", "boolean")
            return Typed(sql.SQL("(CASE WHEN jsonb_typeof({}) = {} THEN {}::{} END)").format(
                typed.sql, sql.Literal(json_type), text, sql.SQL(cast)), kind)
        raise StaBadRequest(f"a JSON property cannot be compared with a {kind} value")

    def _bool(self, typed: Typed, where: str) -> sql.Composable:
        typed = self._coerce(typed, "bool")
        if typed.kind != "bool":
            raise StaBadRequest(f"'{where}' needs conditions (true or false), not a {typed.kind} value")
        return typed.sql

    def as_number(self, typed: Typed, where: str) -> Typed:
        typed = self._coerce(typed, "number")
        if typed.kind != "number":
            raise StaBadRequest(f"'{where}' needs numbers, not a {typed.kind} value")
        return typed

    def as_text(self, typed: Typed, where: str) -> Typed:
        typed = self._coerce(typed, "text")
        if typed.kind != "text":
            raise StaBadRequest(f"{where}() needs text, not a {typed.kind} value")
        return typed

    def as_time(self, typed: Typed, where: str) -> Typed:
        if typed.kind == "text" and typed.is_literal:
            return Typed(self.params.bind(parse_datetime(str(typed.literal)), "timestamptz"), "time")
        if typed.kind != "time":
            raise StaBadRequest(f"{where}() needs a time, not a {typed.kind} value")
        return typed

    # -- operators -----------------------------------------------------------------------------------
    def _binary(self, node: Binary) -> Typed:
        if node.op in ("and", "or"):
            lhs = self._bool(self.value(node.left), node.op)
            rhs = self._bool(self.value(node.right), node.op)
            return Typed(sql.SQL("({} {} {})").format(lhs, sql.SQL(node.op.upper()), rhs), "bool")
        left, right = self.value(node.left), self.value(node.right)
        if node.op in _SQL_COMPARISON:
            return Typed(self._compare(node.op, left, right), "bool")
        return self._arithmetic(node.op, left, right)

    def _compare(self, op: str, left: Typed, right: Typed) -> sql.Composable:
        if right.kind == "null" or left.kind == "null":
            other = left if right.kind == "null" else right
            if op not in ("eq", "ne"):
                raise StaBadRequest(f"null can only be compared with 'eq' or 'ne', not {op!r}")
            return sql.SQL("({} IS {}NULL)").format(other.sql, sql.SQL("" if op == "eq" else "NOT "))
        if left.kind == "interval literal" or right.kind == "interval literal":
            return self._compare_interval(op, left, right)
        for unfit in (left, right):
            if unfit.kind in ("geo", "point", "polygon", "duration"):
                raise StaBadRequest(f"a {unfit.kind} value cannot be compared with {op!r}; "
                                    "use geo.distance() or st_within() for geometry")
        if left.kind == "json" and right.kind != "json":
            left = self._coerce(left, right.kind)
        elif right.kind == "json" and left.kind != "json":
            right = self._coerce(right, left.kind)
        if {left.kind, right.kind} == {"time", "text"}:
            left, right = self.as_time(left, op), self.as_time(right, op)
        if left.kind != right.kind:
            raise StaBadRequest(f"cannot compare a {left.kind} value with a {right.kind} value")
        return sql.SQL("({} {} {})").format(left.sql, sql.SQL(_SQL_COMPARISON[op]), right.sql)

    def _compare_interval(self, op: str, left: Typed, right: Typed) -> sql.Composable:
        flipped = left.kind == "interval literal"
        interval, instant = (left, right) if flipped else (right, left)
        instant = self.as_time(instant, op)
        if flipped:  # `interval op instant` reads as `instant op' interval`
            op = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}.get(op, op)
        start_value, end_value = cast(tuple[datetime, datetime], interval.literal)
        start = self.params.bind(start_value, "timestamptz")
        end = self.params.bind(end_value, "timestamptz")
        t = instant.sql
        shapes = {
            "eq": "({t} >= {s} AND {t} <= {e})", "ne": "({t} < {s} OR {t} > {e})",
            "lt": "({t} < {s})", "le": "({t} <= {e})", "gt": "({t} > {e})", "ge": "({t} >= {s})",
        }
        return sql.SQL(shapes[op]).format(t=t, s=start, e=end)

    def _arithmetic(self, op: str, left: Typed, right: Typed) -> Typed:
        if left.kind == "time" and right.kind == "duration" and op in ("add", "sub"):
            sign = sql.SQL("+" if op == "add" else "-")
            return Typed(sql.SQL("({} {} {})").format(left.sql, sign, right.sql), "time")
        a, b = self.as_number(left, op), self.as_number(right, op)
        if op == "add":
            return Typed(sql.SQL("({} + {})").format(a.sql, b.sql), "number")
        if op == "sub":
            return Typed(sql.SQL("({} - {})").format(a.sql, b.sql), "number")
        if op == "mul":
            return Typed(sql.SQL("({} * {})").format(a.sql, b.sql), "number")
        if op == "div":
            return Typed(sql.SQL("({} / NULLIF({}, 0))").format(a.sql, b.sql), "number")
        return Typed(sql.SQL("(mod({}::numeric, NULLIF({}, 0)::numeric)::float8)").format(a.sql, b.sql), "number")

    # -- functions --------------------------------------------------------------------------------------
    def _call(self, node: Call) -> Typed:
        name = node.name
        if name in _UNSUPPORTED_FUNCTIONS:
            raise StaBadRequest(_UNSUPPORTED_FUNCTIONS[name])
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise StaBadRequest(f"unknown function {name}(); supported: {', '.join(sorted(_FUNCTIONS))}")
        arity, body = handler
        if len(node.args) not in arity:
            counts = " or ".join(str(n) for n in arity)
            raise StaBadRequest(f"{name}() takes {counts} argument(s), not {len(node.args)}")
        return body(self, [self.value(a) for a in node.args])

    def need_geometry(self, typed: Typed, name: str) -> Typed:
        if typed.geometry is None:
            raise StaBadRequest(f"{name}() needs a geometry (location, feature, observedArea or a "
                                f"geography'...' literal), not a {typed.kind} value")
        return typed

    def contained(self, point: Typed, area: Typed, name: str) -> Typed:
        point, area = self.need_geometry(point, name), self.need_geometry(area, name)
        if area.kind != "polygon":
            raise StaBadRequest(f"{name}() needs a geography'POLYGON((...))' as the area")
        return Typed(sql.SQL("({} <@ {})").format(point.geometry, area.geometry), "bool")

    def points_equal(self, a: Typed, b: Typed) -> Typed:
        a, b = self.need_geometry(a, "st_equals"), self.need_geometry(b, "st_equals")
        if "polygon" in (a.kind, b.kind):
            raise StaBadRequest("st_equals() compares points; every geometry here is a point")
        return Typed(sql.SQL("({} ~= {})").format(a.geometry, b.geometry), "bool")

    def intersects(self, a: Typed, b: Typed, name: str) -> Typed:
        a, b = self.need_geometry(a, name), self.need_geometry(b, name)
        if a.kind == "polygon":
            a, b = b, a
        if b.kind == "polygon":
            return self.contained(a, b, name)
        return Typed(sql.SQL("({} ~= {})").format(a.geometry, b.geometry), "bool")


def _text_fn(name: str, template: str, kinds: str) -> Callable[[ExpressionCompiler, list[Typed]], Typed]:
    def body(c: ExpressionCompiler, args: list[Typed]) -> Typed:
        parts = [c.as_text(a, name).sql for a in args]
        return Typed(sql.SQL(template).format(*parts), kinds)
    return body


def _date_part(field: str) -> Callable[[ExpressionCompiler, list[Typed]], Typed]:
    def body(c: ExpressionCompiler, args: list[Typed]) -> Typed:
        t = c.as_time(args[0], field)
        return Typed(sql.SQL("extract({} FROM ({} AT TIME ZONE 'UTC'))::float8").format(sql.SQL(field), t.sql),
                     "number")
    return body


def _second(c: ExpressionCompiler, args: list[Typed]) -> Typed:
    t = c.as_time(args[0], "second")
    return Typed(sql.SQL("floor(extract(second FROM {}))::float8").format(t.sql), "number")


def _fractional_seconds(c: ExpressionCompiler, args: list[Typed]) -> Typed:
    t = c.as_time(args[0], "fractionalseconds")
    return Typed(sql.SQL("(extract(second FROM {0}) - floor(extract(second FROM {0})))::float8").format(t.sql),
                 "number")


def _math(fn: str) -> Callable[[ExpressionCompiler, list[Typed]], Typed]:
    def body(c: ExpressionCompiler, args: list[Typed]) -> Typed:
        return Typed(sql.SQL("{}({})").format(sql.SQL(fn), c.as_number(args[0], fn).sql), "number")
    return body


def _substring(c: ExpressionCompiler, args: list[Typed]) -> Typed:
    text = c.as_text(args[0], "substring").sql
    start = c.as_number(args[1], "substring").sql
    if len(args) == 2:
        return Typed(sql.SQL("substr({}, ({})::int + 1)").format(text, start), "text")
    length = c.as_number(args[2], "substring").sql
    return Typed(sql.SQL("substr({}, ({})::int + 1, ({})::int)").format(text, start, length), "text")


def _distance(c: ExpressionCompiler, args: list[Typed]) -> Typed:
    a, b = c.need_geometry(args[0], "geo.distance"), c.need_geometry(args[1], "geo.distance")
    if "polygon" in (a.kind, b.kind):
        raise StaBadRequest("geo.distance() measures between points; a POLYGON is not supported there")
    return Typed(sql.SQL("({} <-> {})").format(a.geometry, b.geometry), "number")


def _now(c: ExpressionCompiler, args: list[Typed]) -> Typed:
    return Typed(sql.SQL("now()"), "time")


_FUNCTIONS: dict[str, tuple[tuple[int, ...], Callable[[ExpressionCompiler, list[Typed]], Typed]]] = {
    "substringof": ((2,), _text_fn("substringof", "(strpos({1}, {0}) > 0)", "bool")),
    "startswith": ((2,), _text_fn("startswith", "starts_with({0}, {1})", "bool")),
    "endswith": ((2,), _text_fn("endswith", "(right({0}, char_length({1})) = {1})", "bool")),
    "length": ((1,), _text_fn("length", "char_length({0})::float8", "number")),
    "indexof": ((2,), _text_fn("indexof", "(strpos({0}, {1}) - 1)::float8", "number")),
    "substring": ((2, 3), _substring),
    "tolower": ((1,), _text_fn("tolower", "lower({0})", "text")),
    "toupper": ((1,), _text_fn("toupper", "upper({0})", "text")),
    "trim": ((1,), _text_fn("trim", "btrim({0})", "text")),
    "concat": ((2,), _text_fn("concat", "({0} || {1})", "text")),
    **{name: ((1,), _date_part(field)) for name, field in _DATE_PARTS.items()},
    "second": ((1,), _second),
    "fractionalseconds": ((1,), _fractional_seconds),
    "now": ((0,), _now),
    "round": ((1,), _math("round")),
    "floor": ((1,), _math("floor")),
    "ceiling": ((1,), _math("ceiling")),
    "geo.distance": ((2,), _distance),
    "geo.intersects": ((2,), lambda c, a: c.intersects(a[0], a[1], "geo.intersects")),
    "st_intersects": ((2,), lambda c, a: c.intersects(a[0], a[1], "st_intersects")),
    "st_equals": ((2,), lambda c, a: c.points_equal(a[0], a[1])),
    "st_disjoint": ((2,), lambda c, a: Typed(sql.SQL("(NOT {})").format(c.intersects(a[0], a[1], "st_disjoint").sql),
                                              "bool")),
    "st_within": ((2,), lambda c, a: c.contained(a[0], a[1], "st_within")),
    "st_contains": ((2,), lambda c, a: c.contained(a[1], a[0], "st_contains")),
}

