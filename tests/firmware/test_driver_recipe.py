"""firmware/README.md's "Adding a sensor driver" recipe, done verbatim on a copy of the repository,
reaches the API: the new driver's metric is published by the host runner, stored by the gateway
and served by /v1/latest. Its test passes, it compiles with mpy-cross and the device mypy
accepts it, while the recipe edits only the files it names (never the host runner, main.py or the app).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from citysense.firmware_cli import build
from contracts.settings import Settings
from tests.conftest import REPO, count, wait_until

SECTION = "## Adding a sensor driver (worked example)"
COPIED = ("contracts", "calibration", "ingest", "gateway", "api", "citysense", "devtools", "firmware", "tests",
          "pyproject.toml")


def recipe_blocks() -> list[str]:
    """The fenced code blocks of the recipe, in order, dedented as a reader copies them."""
    text = (REPO / "firmware" / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", len(SECTION))]
    return [textwrap.dedent(block) for block in re.findall(r"```[a-z]*\n(.*?)\n *```", section, flags=re.S)]


def follow_recipe(repo: Path) -> list[str]:
    """Steps 1-4 on a copy of the repository; returns step 5's commands."""
    driver, test, registry, fake, commands = recipe_blocks()
    (repo / "firmware/drivers/scd41.py").write_text(driver + "\n")
    (repo / "tests/firmware/test_scd41.py").write_text(test + "\n")
    runner = repo / "firmware/tests_mpy/runner.py"
    runner.write_text(runner.read_text().replace("MODULES = (\n", 'MODULES = (\n    "test_scd41",\n', 1))
    for path, block in (("firmware/lib/sensorconfig.py", registry), ("firmware/host/fakehw.py", fake)):
        target = repo / path
        target.write_text(target.read_text() + "\n\n" + block + "\n")
    return [line for line in commands.splitlines() if line.strip()]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".git", "node_modules", "build", "__pycache__", ".mypy_cache", ".citysense")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copyfile(source, repo / name)
    return repo


def _env(repo: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update(PYTHONPATH=str(repo), **extra)
    return env


@pytest.mark.slow
def test_the_add_a_driver_recipe_done_verbatim_reaches_the_api(
    repo_copy: Path, mosquitto: Any, database_url: str, start_gateway: Any
) -> None:
    run_device, ask_api = follow_recipe(repo_copy)
    # step 2: the recipe's own test passes (pytest on the copy, as `make test` would run it)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/firmware/test_scd41.py"], cwd=repo_copy, env=_env(repo_copy),
                           capture_output=True, text=True, timeout=120, check=False)
    assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout + tests.stderr
    # the driver is real MicroPython: mpy-cross compiles it, the device mypy accepts it
    assert any(p.name == "scd41.mpy" for p in build(repo_copy / "firmware/build", repo_copy / "firmware"))
    typeshed = subprocess.run([sys.executable, "firmware/host/mpy_typeshed.py", "--board", "esp32"], cwd=repo_copy,
                              env=_env(repo_copy), capture_output=True, text=True, timeout=120, check=False)
    assert typeshed.returncode == 0, typeshed.stderr
    mypy = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "firmware/mypy-device.ini"], cwd=repo_copy,
                          env=_env(repo_copy), capture_output=True, text=True, timeout=300, check=False)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    # step 5: the command as printed, on this test's broker, beside a gateway on this test's database
    start_gateway(mosquitto.url, database_url).wait_subscribed()
    argv = shlex.split(run_device.replace("mqtt://127.0.0.1:1883", mosquitto.url))
    assert argv[0] == "citysense"
    device = subprocess.run([sys.executable, "-m", "citysense", *argv[1:]], cwd=repo_copy, env=_env(repo_copy),
                            capture_output=True, text=True, timeout=120, check=False)
    assert device.returncode == 0, device.stdout + device.stderr
    wait_until(lambda: count(database_url, "SELECT count(*) FROM readings WHERE metric = 'co2'") >= 3, 30,
               what="the co2 readings stored")
    url = urlsplit(shlex.split(ask_api)[-1])
    with TestClient(create_app(Settings(database_url=database_url))) as http:
        readings = http.get(f"{url.path}?{url.query}").json()["results"]
    assert len(readings) == 3 and {r["value"] for r in readings} == {500}
    assert count(database_url, "SELECT count(*) FROM readings WHERE device_id = 'co2-box-01' AND metric = 't'") >= 3

