"""A TestClient over a freshly seeded database, for the SensorThings and LASS tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from contracts.settings import Settings
from tests.api.sensorthings.seed import seed


@pytest.fixture
def http(database_url: str) -> Iterator[TestClient]:
    seed(database_url)
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        yield client
