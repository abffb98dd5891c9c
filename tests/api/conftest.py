"""A real `citysense api` (uvicorn) process for the tests that need real sockets: slow clients, fuzzing, logs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devtools.ports import free_port
from devtools.processes import stop_process
from tests.conftest import REPO, wait_until


class ApiProcess:
    """`citysense api` in a child process on a free loopback port, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "citysense", "api", "--port", str(self.port)], env=env, cwd=REPO,
            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )

    def wait_ready(self, timeout: float = 30.0) -> ApiProcess:
        def ready() -> bool:
            assert self.proc.poll() is None, f"api exited with {self.proc.returncode}: {self.log()}"
            try:
                return httpx.get(f"{self.base_url}/v1/flags", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, what="api listening")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


StartApi = Callable[..., ApiProcess]


def start_api_process(database_url: str, folder: Path, **settings: str) -> ApiProcess:
    """An API on `database_url`, ready; extra keyword arguments become CITYSENSE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(CITYSENSE_DATABASE_URL=database_url, CITYSENSE_LOG_LEVEL="INFO", PYTHONPATH=str(REPO))
    env.update({f"CITYSENSE_{key.upper()}": value for key, value in settings.items()})
    api = ApiProcess(env, folder / f"api-{free_port()}.log")
    try:
        return api.wait_ready()
    except BaseException:
        api.stop()
        raise


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[StartApi]:
    """Start APIs for one test (see start_api_process); all are stopped after it."""
    started: list[ApiProcess] = []

    def start(database_url: str, **settings: str) -> ApiProcess:
        api = start_api_process(database_url, tmp_path, **settings)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
