"""One SensorThings GET, as SQL: the addressed entities, their page, their count, their expands.

Statements per request: one for the page, one for `$count`, one per step of a navigation
path, and one per `$expand` level (however many parents it has: the parents' keys go in as
arrays and a `CROSS JOIN LATERAL` runs the child query, with its own $filter, $orderby and
$top, once per parent). So `Datastreams?$expand=Observations($orderby=phenomenonTime desc;$top=1)`
is three statements whose per-Datastream work is one probe of the readings' unique
(device_id, metric, time) index. That one query (the newest Observation of each Datastream) reads
latest_readings instead, where `newest_observation` proves its row the same answer; the Datastreams
it cannot prove take the general path in one more statement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from api.sensorthings.entity_model import (
    ENTITY_SETS,
    NEWEST_OBSERVATIONS_SOURCE,
    EntitySet,
    Navigation,
    entity_set,
    property_sql,
)
from api.sensorthings.errors import StaBadRequest, StaNotFound
from api.sensorthings.filter_sql import ExpressionCompiler, SqlParams
from api.sensorthings.newest_observation import asks_for_newest_only, has_older, proven_newest, series_times
from api.sensorthings.query_options import Expand, QueryOptions, parse_options
from api.sensorthings.resource_path import ResourcePath, parse_resource_path, quote_id
from api.sensorthings.serialise import JsonObject, entity_json, next_link, self_link

Row = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """What a resource path addresses: rows of `entity` whose columns equal `constraints`."""

    entity: EntitySet
    constraints: tuple[tuple[str, object], ...]
    single: bool
    path: str
    property: str | None = None


def _check_select(entity: EntitySet, select: tuple[str, ...] | None) -> None:
    for name in select or ():
        if name not in entity.properties and name not in entity.navigations:
            known = ", ".join([*entity.properties, *entity.navigations])
            raise StaBadRequest(f"$select: {entity.singular} has no property {name!r}; it has {known}")


def _select_list(entity: EntitySet, alias: sql.Identifier, select: tuple[str, ...] | None) -> sql.Composable:
    items: list[sql.Composable] = [
        sql.SQL("{} AS {}").format(property_sql(entity.properties["id"].sql, alias), sql.Identifier("k:id"))
    ]
    for name, prop in entity.properties.items():
        if name != "id" and (select is None or name in select):
            items.append(sql.SQL("{} AS {}").format(property_sql(prop.sql, alias), sql.Identifier(f"p:{name}")))
    for col in entity.columns_for_keys():
        items.append(sql.SQL("{}.{} AS {}").format(alias, sql.Identifier(col), sql.Identifier(f"c:{col}")))
    return sql.SQL(", ").join(items)


def _where(entity: EntitySet, alias: sql.Identifier, params: SqlParams, options: QueryOptions,
           equal: Sequence[tuple[str, sql.Composable]]) -> sql.Composable:
    parts: list[sql.Composable] = [
        sql.SQL("{}.{} = {}").format(alias, sql.Identifier(col), value) for col, value in equal
    ]
    if options.filter is not None:
        parts.append(ExpressionCompiler(entity, alias, params).condition(options.filter))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def _order(entity: EntitySet, alias: sql.Identifier, params: SqlParams, options: QueryOptions) -> sql.Composable:
    compiler = ExpressionCompiler(entity, alias, params)
    items = [
        sql.SQL("{} {}").format(compiler.orderable(o.expression), sql.SQL("DESC" if o.descending else "ASC"))
        for o in options.orderby
    ]
    items.extend(sql.SQL("{}.{}").format(alias, sql.Identifier(c)) for c in entity.order_columns)
    return sql.SQL(", ").join(items)


def _parent_keys(params: SqlParams, nav: Navigation, keys: Sequence[tuple[str, ...]],
                 ) -> tuple[sql.Composable, list[tuple[str, sql.Composable]]]:
    """The parents' keys as `unnest(...) WITH ORDINALITY AS p(k0, .., ord)` and the child columns
    that must equal them (`p.k0`, ...)."""
    arrays = sql.SQL(", ").join(params.bind([k[i] for k in keys], "text[]") for i in range(len(nav.parent_columns)))
    key_names = [f"k{i}" for i in range(len(nav.parent_columns))]
    unnest = sql.SQL("unnest({}) WITH ORDINALITY AS p({}, ord)").format(
        arrays, sql.SQL(", ").join(sql.Identifier(k) for k in key_names))
    equal: list[tuple[str, sql.Composable]] = [
        (tc, sql.SQL("p.{}").format(sql.Identifier(k))) for tc, k in zip(nav.target_columns, key_names, strict=True)
    ]
    return unnest, equal


class QueryRunner:
    def __init__(self, conn: AsyncConnection[Any], base: str, newest_from_latest: bool = True) -> None:
        """`newest_from_latest=False`: every expand takes the general path (the equivalence tests
        compare the two answers)."""
        self.conn = conn
        self.base = base
        self.newest_from_latest = newest_from_latest

    async def _rows(self, statement: sql.Composed, params: SqlParams) -> list[Row]:
        async with self.conn.cursor(row_factory=dict_row) as cur:
            # jsonb columns (properties, unitOfMeasurement, parameters...) with orjson, not the standard
            # library: a page of 100 Datastreams with their Thing and Observation reads ~600 of them
            set_json_loads(orjson.loads, cur)
            await cur.execute(statement, params.values)
            return await cur.fetchall()

    # -- the path --------------------------------------------------------------------------------------
    async def resolve(self, path: ResourcePath) -> Target:
        first = path.segments[0]
        entity = entity_set(first.name)
        target = Target(entity, (), False, entity.name)
        if first.id is not None:
            target = self._by_id(target, first.id)
        for segment in path.segments[1:]:
            if target.property is not None:
                raise StaBadRequest(f"{target.path} is a property; nothing can follow it but /$value")
            if not target.single:
                raise StaBadRequest(f"{target.path} is a collection; address one entity, e.g. "
                                    f"{target.path}('…')/{segment.name}")
            nav = target.entity.navigations.get(segment.name)
            if nav is None:
                if segment.name in target.entity.properties and segment.id is None:
                    target = Target(target.entity, target.constraints, True, f"{target.path}/{segment.name}",
                                    segment.name)
                    continue
                raise StaNotFound(f"{target.entity.singular} has no navigation or property {segment.name!r}")
            parent = await self._one_row(target)
            child = ENTITY_SETS[nav.target]
            constraints = tuple(
                (tc, parent[f"c:{pc}"]) for pc, tc in zip(nav.parent_columns, nav.target_columns, strict=True)
            )
            target = Target(child, constraints, not nav.many, f"{target.path}/{segment.name}")
            if segment.id is not None:
                if not nav.many:
                    raise StaBadRequest(f"{target.path} is a single entity; it takes no id")
                target = self._by_id(target, segment.id)
        if path.value and target.property is None:
            raise StaBadRequest("$value follows a property, e.g. Things('…')/name/$value")
        return target

    def _by_id(self, target: Target, ident: str) -> Target:
        values = target.entity.parse_id(ident)
        constraints = target.constraints + tuple(zip(target.entity.id_columns, values, strict=True))
        return Target(target.entity, constraints, True, f"{target.path}({quote_id(ident)})")

    async def _one_row(self, target: Target, options: QueryOptions | None = None) -> Row:
        rows = await self._page(target, options or QueryOptions(top=1, select=()), limit=1)
        if not rows:
            raise StaNotFound(f"no {target.entity.singular} at {target.path}")
        return rows[0]

    # -- statements ----------------------------------------------------------------------------------
    async def _page(self, target: Target, options: QueryOptions, limit: int | None, skip: int = 0) -> list[Row]:
        entity = target.entity
        _check_select(entity, options.select)
        params = SqlParams()
        alias = sql.Identifier("e0")
        equal = [(col, params.bind(value)) for col, value in target.constraints]
        statement = sql.SQL("SELECT {} FROM ({}) AS {} WHERE {} ORDER BY {}").format(
            _select_list(entity, alias, options.select), entity.source, alias,
            _where(entity, alias, params, options, equal), _order(entity, alias, params, options),
        )
        if limit is not None:
            statement = sql.SQL("{} LIMIT {} OFFSET {}").format(statement, sql.Literal(limit), sql.Literal(skip))
        return await self._rows(statement, params)

    async def _count(self, target: Target, options: QueryOptions) -> int:
        params = SqlParams()
        alias = sql.Identifier("e0")
        equal = [(col, params.bind(value)) for col, value in target.constraints]
        statement = sql.SQL("SELECT count(*) AS n FROM ({}) AS {} WHERE {}").format(
            target.entity.source, alias, _where(target.entity, alias, params, options, equal)
        )
        rows = await self._rows(statement, params)
        return int(rows[0]["n"])

    async def _expand(self, entity: EntitySet, parents: list[tuple[Row, JsonObject]], expand: Expand) -> None:
        """Fills `expand.navigation` of every parent, with two statements at most for all of them
        (three when some Datastreams' newest Observations are read from latest_readings and others not)."""
        nav = entity.navigations.get(expand.navigation)
        if nav is None:
            raise StaBadRequest(f"$expand: {entity.singular} has no navigation property {expand.navigation!r}; "
                                f"it has {', '.join(entity.navigations)}")
        child = ENTITY_SETS[nav.target]
        options = expand.options
        _check_select(child, options.select)
        keys = sorted({tuple(str(row[f"c:{c}"]) for c in nav.parent_columns) for row, _ in parents})
        if self.newest_from_latest and entity.name == "Datastreams" and expand.navigation == "Observations" \
                and asks_for_newest_only(options):
            by_key, more = await self._newest_observations(child, nav, parents, keys, options)
        else:
            by_key = await self._child_rows(child, nav, keys, options, child.source)
            more = {key for key, found in by_key.items() if nav.many and len(found) > options.top}
        counts: dict[tuple[str, ...], int] = {}
        if nav.many and options.count:
            count_params = SqlParams()
            count_alias = count_params.alias()
            count_unnest, equal = _parent_keys(count_params, nav, keys)
            count_sql = sql.SQL("SELECT p.ord AS ord, (SELECT count(*) FROM ({}) AS {} WHERE {}) AS n FROM {}").format(
                child.source, count_alias, _where(child, count_alias, count_params, options, equal), count_unnest)
            for row in await self._rows(count_sql, count_params):
                counts[keys[int(row["ord"]) - 1]] = int(row["n"])
        children: list[tuple[Row, JsonObject]] = []
        for parent_row, parent_json in parents:
            key = tuple(str(parent_row[f"c:{c}"]) for c in nav.parent_columns)
            found = by_key.get(key, [])
            if not nav.many:
                if found:
                    parent_json[expand.navigation] = entity_json(child, found[0], options.select, self.base)
                    children.append((found[0], parent_json[expand.navigation]))
                continue
            page = found[: options.top]
            values = [entity_json(child, r, options.select, self.base) for r in page]
            children.extend(zip(page, values, strict=True))
            if options.count:
                parent_json[f"{expand.navigation}@iot.count"] = counts.get(key, 0)
            parent_json[expand.navigation] = values
            if key in more:
                url = f"{self_link(self.base, entity, str(parent_row['k:id']))}/{expand.navigation}"
                parent_json[f"{expand.navigation}@iot.nextLink"] = next_link(url, options.raw, options.top,
                                                                             options.skip)
        for nested in options.expand:
            if children:
                await self._expand(child, children, nested)

    async def _child_rows(self, child: EntitySet, nav: Navigation, keys: Sequence[tuple[str, ...]],
                          options: QueryOptions, source: sql.Composable) -> dict[tuple[str, ...], list[Row]]:
        """The rows of `child` under each parent key, from `source` (the child's own, or one that
        answers for it): one statement, the child query run per parent by a `CROSS JOIN LATERAL`."""
        params = SqlParams()
        alias = params.alias()
        unnest, equal = _parent_keys(params, nav, keys)
        limit = options.top + 1 if nav.many else 1
        inner = sql.SQL("SELECT {} FROM ({}) AS {} WHERE {} ORDER BY {} LIMIT {} OFFSET {}").format(
            _select_list(child, alias, options.select), source, alias,
            _where(child, alias, params, options, equal), _order(child, alias, params, options),
            sql.Literal(limit), sql.Literal(options.skip if nav.many else 0),
        )
        statement = sql.SQL("SELECT p.ord AS {}, x.* FROM {} CROSS JOIN LATERAL ({}) AS x").format(
            sql.Identifier("parent:ord"), unnest, inner)
        by_key: dict[tuple[str, ...], list[Row]] = defaultdict(list)
        for row in await self._rows(statement, params):
            by_key[keys[int(row["parent:ord"]) - 1]].append(row)
        return by_key

    async def _newest_observations(
        self, child: EntitySet, nav: Navigation, parents: list[tuple[Row, JsonObject]],
        keys: Sequence[tuple[str, ...]], options: QueryOptions,
    ) -> tuple[dict[tuple[str, ...], list[Row]], set[tuple[str, ...]]]:
        """Each Datastream's newest Observation from latest_readings where `newest_observation`
        proves it the general path's answer, the general path for the rest; and the keys that have
        a second Observation (their nextLink)."""
        times = {tuple(str(row[f"c:{c}"]) for c in nav.parent_columns): series_times(row) for row, _ in parents}
        params = SqlParams()
        alias = params.alias()
        unnest, equal = _parent_keys(params, nav, keys)
        # a plain join, not a LATERAL with ORDER BY/LIMIT: the table holds one row per series (its key),
        # so the planner may hash it once instead of probing it per Datastream
        statement = sql.SQL("SELECT p.ord AS {}, {} FROM {} JOIN ({}) AS {} ON {}").format(
            sql.Identifier("parent:ord"), _select_list(child, alias, options.select), unnest,
            NEWEST_OBSERVATIONS_SOURCE, alias, _where(child, alias, params, options, equal))
        latest = {keys[int(row["parent:ord"]) - 1]: row for row in await self._rows(statement, params)}
        by_key: dict[tuple[str, ...], list[Row]] = {}
        more: set[tuple[str, ...]] = set()
        rest: list[tuple[str, ...]] = []
        for key in keys:
            span, newest = times[key], latest.get(key)
            if span is not None and newest is not None and proven_newest(span, newest):
                by_key[key] = [newest]
                if has_older(span, newest):
                    more.add(key)
            else:
                rest.append(key)
        if rest:
            general = await self._child_rows(child, nav, rest, options, child.source)
            by_key.update(general)
            more.update(key for key, found in general.items() if len(found) > options.top)
        return by_key, more

    # -- the request ------------------------------------------------------------------------------------
    async def get(self, path_text: str, query: Mapping[str, str]) -> JsonObject | str:
        path = parse_resource_path(path_text)
        options = parse_options(query)
        target = await self.resolve(path)
        entity = target.entity
        if target.property is not None:
            row = await self._one_row(target, QueryOptions(select=(target.property,)))
            value = entity_json(entity, row, (target.property,), self.base)[target.property]
            if path.value:
                return "" if value is None else str(value)
            return {target.property: value}
        if path.ref:
            ref_options = QueryOptions(top=options.top, skip=options.skip, count=options.count,
                                       orderby=options.orderby, select=("id",), filter=options.filter, raw=options.raw)
            if target.single:
                row = await self._one_row(target, ref_options)
                return {"@iot.selfLink": self_link(self.base, entity, str(row["k:id"]))}
            listing = await self._collection(target, ref_options)
            listing["value"] = [{"@iot.selfLink": v["@iot.selfLink"]} for v in listing["value"]]
            return listing
        if target.single:
            row = await self._one_row(target, options)
            out = entity_json(entity, row, options.select, self.base)
            for expand in options.expand:
                await self._expand(entity, [(row, out)], expand)
            return out
        return await self._collection(target, options)

    async def _collection(self, target: Target, options: QueryOptions) -> JsonObject:
        rows = await self._page(target, options, limit=options.top + 1, skip=options.skip)
        page = rows[: options.top]
        values = [entity_json(target.entity, r, options.select, self.base) for r in page]
        for expand in options.expand:
            if page:
                await self._expand(target.entity, list(zip(page, values, strict=True)), expand)
        out: JsonObject = {}
        if options.count:
            out["@iot.count"] = await self._count(target, options)
        out["value"] = values
        if len(rows) > options.top:
            out["@iot.nextLink"] = next_link(f"{self.base}/{target.path}", options.raw, options.top, options.skip)
        return out


def service_root(base: str) -> JsonObject:
    """The landing document (§9.2.1): one link per entity set and the conformance classes served."""
    return {
        "value": [{"name": name, "url": f"{base}/{name}"} for name in ENTITY_SETS],
        "serverSettings": {
            "conformance": [
                "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
                "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
                "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
            ],
        },
    }
