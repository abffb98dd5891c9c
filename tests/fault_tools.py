"""Tools the fault tests share: v1 message streams, C publishers, /metrics and RSS readers.

Every message of a stream has its own (device, ts), so the number of rows a stream must
produce is exact and any loss or duplicate shows in a count.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson
import psutil

from tests.conftest import count

METRICS_PER_MESSAGE = 2


def v1_stream(devices: int, per_device: int, *, prefix: str = "ft", start: int = 0) -> dict[str, list[bytes]]:
    """topic -> payloads; message k of a device is measured at base + start + k seconds."""
    base_ts = int(time.time()) - 2 * 86400
    stream: dict[str, list[bytes]] = {}
    for d in range(devices):
        device = f"{prefix}-{d:04d}"
        stream[f"citysense/v1/airbox/{device}/up"] = [
            orjson.dumps(
                {"v": 1, "id": device, "seq": k, "ts": base_ts + k, "m": {"pm25": 5 + (k * 7 + d) % 40, "t": 21.5}}
            )
            for k in range(start, start + per_device)
        ]
    return stream


def message_count(stream: dict[str, list[bytes]]) -> int:
    return sum(len(p) for p in stream.values())


Credentials = Mapping[str, tuple[str, str]]
"""topic -> (username, password) of the device that publishes it, for a closed broker."""


def airbox_payloads(device: str, seqs: range, ts0: int) -> list[bytes]:
    """Air-box messages (contracts v1) of one device, one a second from `ts0 + seq`, PM2.5 varying (never stuck)."""
    return [orjson.dumps({"v": 1, "id": device, "seq": k, "ts": ts0 + k, "m": {"pm25": 10.0 + k % 5}}) for k in seqs]


def publish(port: int, stream: dict[str, list[bytes]], *, parallel: int = 25, timeout: float = 120.0,
            credentials: Credentials | None = None) -> None:
    """Publish every payload at QoS 1 with mosquitto_pub -l (one process per topic, `parallel` at once).

    mosquitto_pub exits 0 only when the broker has acknowledged every line; a process that
    fails is run again with the same lines, which the gateway stores idempotently.
    """
    pending = list(stream.items())
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} topics still unpublished after {timeout:.0f} s"
        wave, pending = pending[:parallel], pending[parallel:]
        running = [
            (topic, payloads, _start_pub(port, topic, payloads, (credentials or {}).get(topic)))
            for topic, payloads in wave
        ]
        for topic, payloads, proc in running:
            try:
                ok = proc.wait(max(1.0, deadline - time.monotonic())) == 0
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                ok = False
            if not ok:
                pending.append((topic, payloads))


def _start_pub(port: int, topic: str, payloads: list[bytes], login: tuple[str, str] | None) -> subprocess.Popen[bytes]:
    auth = ["-u", login[0], "-P", login[1]] if login else []
    proc = subprocess.Popen(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-M", "200", "-t", topic, "-l", *auth],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"\n".join(payloads) + b"\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass
    return proc


class BackgroundPublisher:
    """Publishes a stream from a thread, so a test can break things while it flows."""

    def __init__(self, port: int, stream: dict[str, list[bytes]], *, parallel: int = 25, chunks: int = 1,
                 pause_s: float = 0.0, credentials: Credentials | None = None) -> None:
        self.port, self.stream, self.parallel, self.chunks, self.pause_s = port, stream, parallel, chunks, pause_s
        self.credentials = credentials
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for part in split_stream(self.stream, self.chunks):
                publish(self.port, part, parallel=self.parallel, credentials=self.credentials)
                time.sleep(self.pause_s)
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.error = exc

    def start(self) -> BackgroundPublisher:
        self._thread.start()
        return self

    def join(self, timeout: float = 180.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher still running"
        if self.error is not None:
            raise self.error


def split_stream(stream: dict[str, list[bytes]], chunks: int) -> Iterable[dict[str, list[bytes]]]:
    """The stream cut in time: chunk i holds the i-th slice of every topic's payloads."""
    for i in range(chunks):
        part = {}
        for topic, payloads in stream.items():
            step = -(-len(payloads) // chunks)
            if payloads[i * step:(i + 1) * step]:
                part[topic] = payloads[i * step:(i + 1) * step]
        yield part


def readings(database_url: str) -> int:
    return count(database_url, "SELECT count(*) FROM readings")


def distinct_readings(database_url: str) -> int:
    return count(database_url, "SELECT count(*) FROM (SELECT DISTINCT device_id, metric, time FROM readings) k")


def scrape(port: int, name: str) -> float:
    """The value of one unlabelled sample on a gateway's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert m is not None, f"{name} not on /metrics"
    return float(m.group(1))


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def log_has(path: Path, needle: str) -> bool:
    return path.exists() and needle in path.read_text(errors="replace")
