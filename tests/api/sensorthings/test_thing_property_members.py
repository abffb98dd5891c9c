"""`Thing/properties/<key>` in `$filter` and `$orderby` reads the one devices column the key holds
(entity_model.THING_PROPERTIES) instead of building the whole `properties` object per row: the
two must be the same value for every Thing and key, nulls and retirement included."""

from __future__ import annotations

import psycopg
from psycopg import sql

from api.sensorthings.entity_model import ENTITY_SETS, THINGS_SOURCE, property_sql
from tests.api.sensorthings.seed import seed


def test_each_member_is_the_value_the_properties_object_holds(database_url: str) -> None:
    seed(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE devices SET retired_at = now(), owner = 'city' WHERE device_id = 'box-c'")
        members = ENTITY_SETS["Things"].properties["properties"].members
        assert members is not None and set(members) >= {"city", "district", "school", "authority", "retiredAt"}
        alias = sql.Identifier("t")
        for key, template in members.items():
            differing = conn.execute(sql.SQL(
                "SELECT count(*) FROM ({}) AS t WHERE {} IS DISTINCT FROM (t.properties -> {})"
            ).format(THINGS_SOURCE, property_sql(template, alias), sql.Literal(key))).fetchone()
            assert differing == (0,), key
        things = conn.execute(b"SELECT count(*) FROM devices").fetchone()
        assert things is not None and things[0] == 4
