"""Every command block of the user docs runs verbatim against a demo stack (convention: doc_blocks.py).

One `citysense demo` (50 boxes, 14 days of history) is started for the session on free loopback
ports, in a scratch folder that holds its `.citysense/` and links to the repository's `data/` and
`firmware/`; each doc's walked blocks then run in order, as a reader would run them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from devtools.ports import free_port
from tests.docs.doc_blocks import (
    REPO,
    WALKED_DOCS,
    Block,
    DocFormatError,
    doc_blocks,
    output_matches,
    parse_blocks,
)

COMMAND_TIMEOUT_S = 60.0
DEMO_START_TIMEOUT_S = 120.0
# the addresses the docs name (the settings' defaults), which stand for the demo's
DEFAULTS = {
    "api": "127.0.0.1:8000", "mqtt": "127.0.0.1:1883", "postgres": "127.0.0.1:5432", "metrics": "127.0.0.1:9108",
}
_BANNER = {
    "api": re.compile(r"^\s+API\s+http://(127\.0\.0\.1:\d+)"),
    "mqtt": re.compile(r"^\s+MQTT broker\s+mqtt://(127\.0\.0\.1:\d+)"),
    "postgres": re.compile(r"^\s+PostgreSQL\s+postgresql://\S+@(127\.0\.0\.1:\d+)/"),
    "metrics": re.compile(r"^\s+gateway stats\s+http://(127\.0\.0\.1:\d+)/metrics"),
}


@dataclass
class DemoStack:
    """A running demo: the folder commands run in, their environment, and the demo's addresses."""

    folder: Path
    env: dict[str, str]
    addresses: dict[str, str]  # "api" -> "127.0.0.1:PORT", ...

    def localise(self, text: str) -> str:
        """The doc's default addresses replaced with this demo's."""
        for name, default in DEFAULTS.items():
            text = text.replace(default, self.addresses[name])
        return text


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT (the demo's Ctrl-C), then, if it hangs, every process it started (found before the
    signal: its children run in sessions of their own and would outlive it)."""
    tree = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    folder = tmp_path_factory.mktemp("doc-walk")
    for name in ("data", "firmware"):
        (folder / name).symlink_to(REPO / name)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    base.update(PYTHONPATH=str(REPO), COLUMNS="200", PATH=f"{Path(sys.executable).parent}{os.pathsep}{base['PATH']}")
    demo_env = {**base, "CITYSENSE_DATA_DIR": str(folder / ".citysense"), "CITYSENSE_API_PORT": str(free_port())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "citysense", "demo", "--airboxes", "50", "--parking", "10", "--host-devices", "0"],
        env=demo_env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    printed: list[str] = []
    ready = threading.Event()

    def read_output() -> None:  # all of it, to the end: a full pipe would stall the demo
        assert proc.stdout is not None
        for line in proc.stdout:
            printed.append(line)
            if "Press Ctrl-C to stop." in line:
                ready.set()
        ready.set()

    threading.Thread(target=read_output, daemon=True).start()
    try:
        ready.wait(DEMO_START_TIMEOUT_S)
        addresses = {name: m.group(1) for line in printed for name, pattern in _BANNER.items()
                     if (m := pattern.match(line))}
        assert set(addresses) == set(DEFAULTS), "the demo's banner lacks addresses:\n" + "".join(printed[-40:])
        env = {
            **base, "CITYSENSE_DATA_DIR": ".citysense",
            "CITYSENSE_DATABASE_URL": f"postgresql://citysense@{addresses['postgres']}/citysense",
            "CITYSENSE_MQTT_URL": f"mqtt://{addresses['mqtt']}",
            "CITYSENSE_API_PORT": addresses["api"].rsplit(":", 1)[1],
        }
        yield DemoStack(folder, env, addresses)
    finally:
        _stop(proc)


def _walk(stack: DemoStack, block: Block) -> None:
    for step in block.steps():
        command = stack.localise(step.command)
        started = time.monotonic()
        try:
            run = subprocess.run(
                ["bash", "-c", command], cwd=stack.folder, env=stack.env, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"{block.where()}: `{step.command}` ran longer than {COMMAND_TIMEOUT_S:.0f} s")
        output = run.stdout + run.stderr
        said = f"{block.where()}: `{step.command}` ({time.monotonic() - started:.1f} s) printed:\n{output[-3000:]}"
        assert run.returncode == step.exit_status, f"exit {run.returncode}, not {step.exit_status}. {said}"
        missing = output_matches([stack.localise(line) for line in step.expected], output)
        assert missing is None, f"expected output line not found: {missing!r}. {said}"


def test_every_block_of_the_docs_is_walked_or_excluded_with_a_reason() -> None:
    blocks = doc_blocks()  # raises DocFormatError, naming the file and line, for a block that is neither
    assert set(blocks) == set(WALKED_DOCS)
    walked = [b for bs in blocks.values() for b in bs if b.walked]
    assert len(walked) >= 6 and all(b.steps() for b in walked)


def test_a_block_neither_walked_nor_excluded_fails_the_walk() -> None:
    with pytest.raises(DocFormatError, match=r"guide.md:3: a ```bash block"):
        parse_blocks("guide.md", "Run it:\n\n```bash\ncitysense db migrate\n```\n")
    with pytest.raises(DocFormatError, match="indented block"):
        parse_blocks("guide.md", "Run it:\n\n    citysense db migrate\n")
    excluded = parse_blocks("guide.md", "<!-- not walked: flashes a board -->\n```\nmpremote reset\n```\n")
    assert excluded[0].not_walked == "flashes a board"


def test_expected_output_is_matched_in_order_with_wildcards() -> None:
    [block] = parse_blocks("guide.md", "```console\n$ citysense x \\\n    --y 1\nfirst ... line\n(exit 1)\n```\n")
    [step] = block.steps()
    assert (step.command, step.expected, step.exit_status) == ("citysense x --y 1", ["first ... line"], 1)
    assert output_matches(["a ... c", "d"], "a  b   c\nd\n") is None
    assert output_matches(["d", "a ... c"], "a b c\nd\n") == "a ... c"  # order counts


@pytest.mark.slow
@pytest.mark.parametrize("doc", WALKED_DOCS)
def test_doc_runs_verbatim_against_the_demo(demo_stack: DemoStack, doc: str) -> None:
    walked = [block for block in doc_blocks()[doc] if block.walked]
    assert walked, f"{doc} has no walked block: every walked doc keeps at least one command that runs"
    for block in walked:
        _walk(demo_stack, block)
