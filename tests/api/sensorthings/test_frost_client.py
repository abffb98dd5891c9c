"""A SensorThings client we did not write (FROST's `frost-sta-client`) reads citysense through
a real uvicorn process on a loopback port: Things, Datastreams with their latest Observation,
and a filtered time range of Observations, following @iot.nextLink on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import frost_sta_client as fsc  # type: ignore[import-untyped]
import pytest

from devtools.ports import free_port, wait_for_port
from devtools.processes import stop_process
from tests.api.sensorthings.seed import NOW, seed

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def sta_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    seed(database_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(CITYSENSE_DATABASE_URL=database_url, CITYSENSE_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
    with open(tmp_path / "api.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "citysense", "api", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, 60)
            yield f"http://127.0.0.1:{port}/sta/v1.1"
        finally:
            stop_process(proc)


def test_frost_client_lists_things_expands_latest_and_reads_a_time_range(sta_url: str) -> None:
    service = fsc.SensorThingsService(sta_url)

    things = {t.id: t for t in service.things().query().top(2).list()}  # two pages: follows @iot.nextLink
    assert set(things) == {"box-a", "box-b", "box-c", "park-1"}
    assert things["box-a"].properties["city"] == "臺北市"

    latest = service.datastreams().query().filter("name eq 'PM2.5' and Thing/properties/city eq '臺北市'") \
        .expand("Thing,Observations($orderby=phenomenonTime desc;$top=1)").list()
    by_thing = {ds.thing.id: ds for ds in latest}
    assert set(by_thing) == {"box-a", "box-b"}
    newest = list(by_thing["box-b"].observations)
    assert len(newest) >= 1 and newest[0].result == 20.0
    assert by_thing["box-b"].unit_of_measurement.symbol == "µg/m³"

    start = (NOW - timedelta(minutes=29)).isoformat().replace("+00:00", "Z")
    end = (NOW - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    window = service.observations().query() \
        .filter(f"Datastream/@iot.id eq 'box-a:pm25' and phenomenonTime ge {start} and phenomenonTime le {end}") \
        .top(7).list()
    results = list(window)
    assert len(results) == 20
    assert all(start <= o.phenomenon_time <= end for o in results)
