"""The Node-RED peer of `citysense bench ingest --peer node-red`: what a maker builds, in the same run.

The flow (devtools/bench/node_red/flow.json) is the one the Node-RED cookbook and forum
answers converge on for "MQTT to PostgreSQL, fast": `mqtt in` at QoS 1 on a persistent
session, a `join` of 500 messages or 100 ms, one multi-row `INSERT ... ON CONFLICT DO
NOTHING` per batch through the `pg` client (a function node: the contributed PostgreSQL
nodes wrap the same client). Node-RED acknowledges each message when it reads it, before it
writes, so a kill -9 loses what sits in the join and in flight: the bench measures that too.

Node-RED and `pg` are pinned by the package-lock.json beside the flow and installed with
`npm ci` into a cache folder on first use (the npm registry is the only network needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.bench.limits import SubscriberResult
from devtools.ports import free_port

FILES = Path(__file__).with_name("node_red")


class NodeRedUnavailable(RuntimeError):
    """Node.js/npm missing or the install failed: the bench reports the peer as not run."""


def cache_root() -> Path:
    """Where the pinned Node-RED lives: $CITYSENSE_NODE_RED_CACHE, else ~/.cache/citysense."""
    env = os.environ.get("CITYSENSE_NODE_RED_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "citysense" / "node-red"


def install(root: Path | None = None) -> Path:
    """`npm ci` the pinned lockfile into a folder named by its hash (a new pin, a new folder)."""
    lock = (FILES / "package-lock.json").read_bytes()
    home = (root or cache_root()) / hashlib.sha256(lock).hexdigest()[:12]
    if (home / "node_modules" / "node-red" / "red.js").exists():
        return home
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise NodeRedUnavailable("node and npm are needed for the Node-RED peer (Debian: apt-get install nodejs npm)")
    home.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(FILES / name, home / name)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--omit=dev"], cwd=home, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise NodeRedUnavailable(f"npm ci of Node-RED failed in {home}: {tail[0]}")
    return home


@dataclass
class NodeRedStats:
    messages: int
    first: float
    last: float
    errors: int
    connected: bool


class NodeRedPeer:
    """One Node-RED process running the flow against a broker and a database (same interface as
    the bench's other subscribers: `process`, `result()`), restartable for the kill -9 phase."""

    def __init__(self, home: Path, broker_port: int, database_url: str, run_dir: Path) -> None:
        self.home = home
        self.broker_port = broker_port
        self.database_url = database_url
        self.run_dir = run_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] = self._start()
        self._cpu_at_ready = process_cpu_s(self.process.pid)  # start-up is not the flow's work

    def _start(self) -> subprocess.Popen[bytes]:
        user_dir = self.run_dir / "node-red-user"
        user_dir.mkdir(parents=True, exist_ok=True)
        # settings.js requires `pg`: it must sit where node_modules resolves it.
        shutil.copyfile(FILES / "settings.js", self.home / "settings.js")
        env = {
            **os.environ, "MQTT_PORT": str(self.broker_port), "DATABASE_URL": self.database_url,
            "NODE_RED_PORT": str(self.port), "NODE_RED_FLOW": str(FILES / "flow.json"),
        }
        log = (self.run_dir / "node-red.log").open("ab")
        proc = subprocess.Popen(
            ["node", str(self.home / "node_modules" / "node-red" / "red.js"),
             "--settings", str(self.home / "settings.js"), "--userDir", str(user_dir)],
            cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeRedUnavailable(f"Node-RED exited with {proc.returncode}; see {self.run_dir / 'node-red.log'}")
            stats = self._try_stats()
            if stats is not None and stats.connected:
                return proc
            time.sleep(0.2)
        proc.kill()
        raise NodeRedUnavailable(f"Node-RED did not connect to the broker within 60 s; see {self.run_dir}")

    def _try_stats(self) -> NodeRedStats | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/bench/stats", timeout=2) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return NodeRedStats(int(doc["messages"]), float(doc["first"]), float(doc["last"]), int(doc["errors"]),
                            bool(doc["connected"]))

    def stats(self) -> NodeRedStats:
        got = self._try_stats()
        if got is None:
            raise NodeRedUnavailable("Node-RED's stats endpoint did not answer")
        return got

    def kill9(self) -> None:
        """What a power cut or the OOM killer does: no chance to write what it acknowledged."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        self.process = self._start()
        self._cpu_at_ready = process_cpu_s(self.process.pid)

    def result(self, timeout: float) -> SubscriberResult:
        """Wait until the count stops moving for 2 s; the rate is over its own first..last commit."""
        deadline = time.monotonic() + timeout
        last_seen, still_since = -1, time.monotonic()
        stats = self.stats()
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats.messages != last_seen:
                last_seen, still_since = stats.messages, time.monotonic()
            elif stats.messages > 0 and time.monotonic() - still_since > 2.0:
                break
            time.sleep(0.25)
        cpu = process_cpu_s(self.process.pid) - self._cpu_at_ready
        return SubscriberResult(stats.messages, stats.first, stats.last, cpu, extra=stats.messages)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    import psutil  # noqa: PLC0415

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)
