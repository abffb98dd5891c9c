"""Paced payload-v1 publishers, each in its own process with its own MQTT connection.

Each process owns a disjoint set of devices and publishes their messages in turn at a
fixed rate, QoS 1. A message's `ts` is the time it was *scheduled* to be sent (ms
precision), not the time it left: a publisher that falls behind shows up as latency, so
the measurement does not hide its own stalls (no coordinated omission). Per device the
scheduled times are `devices / rate` seconds apart, so (device, metric, time) is unique.
"""

from __future__ import annotations

import multiprocessing as mp
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

METRICS_PER_MESSAGE = 5
INFLIGHT_WINDOW = 2000  # QoS 1 messages sent but not yet PUBACKed, per process
TICK_S = 0.004  # a paced publisher sends what is due every 4 ms (counted in latency: ts is the schedule)
_PAYLOAD = b'{"v":1,"id":"%s","seq":%d,"ts":%.3f,"m":{"pm1":%d,"pm25":%d,"pm10":%d,"t":%.1f,"rh":%.1f}}'


def device_id(index: int) -> str:
    return f"bench-{index:05d}"


def topic_for(prefix: str, device: str) -> str:
    return f"{prefix}/v1/airbox/{device}/up"


def payload(device: bytes, device_index: int, seq: int, ts: float) -> bytes:
    """One v1 message with five metrics; values vary per device and seq but stay in range."""
    k = device_index * 7 + seq * 3
    return _PAYLOAD % (
        device, seq, ts, 3 + k % 20, 5 + k % 40, 8 + k % 60, 18.0 + (k % 90) / 10, 40.0 + (k % 400) / 10,
    )


@dataclass(frozen=True)
class LoadSpec:
    """What one run of the generator publishes; `rate=None` publishes as fast as it can."""

    host: str
    port: int
    devices: int
    rate: float | None
    duration_s: float
    processes: int = 2
    topic_prefix: str = "citysense"
    seq_offset: int = 0  # lets a second phase continue each device's seq
    time_offset_s: float = 0.0  # shifts ts, e.g. to keep two phases' times apart
    accounts: tuple[tuple[str, str], ...] = ()  # (username, password) per process, for a closed broker


@dataclass
class LoadResult:
    published: int = 0
    acked: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    cpu_s: float = 0.0
    max_lag_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        span = self.last_send - self.first_send
        return self.published / span if span > 0 else 0.0


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


class QosOnePublisher:
    """A minimal MQTT 3.1.1 client that only publishes at QoS 1 and counts PUBACKs.

    The bench needs a load generator far cheaper than the gateway it loads: paho spends
    ~100 µs of CPU per published message (objects, locks, one send per packet), which on
    two cores would steal the CPU being measured. This client writes many PUBLISH packets
    with one `sendall` and reads PUBACKs in bulk; a window bounds the unacknowledged ones.
    """

    def __init__(
        self, host: str, port: int, client_id: str, window: int = INFLIGHT_WINDOW,
        account: tuple[str, str] | None = None,
    ) -> None:
        self.window = window
        self.acked = 0
        self.sent = 0
        self._buf = b""
        self._mid = 0
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0x02 | (0xC0 if account else 0)  # clean session; username and password on a closed broker
        body = _utf8(b"MQTT") + bytes([4, flags]) + (0).to_bytes(2, "big") + _utf8(client_id.encode())
        if account:
            body += _utf8(account[0].encode()) + _utf8(account[1].encode())
        self.sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = self.sock.recv(4)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise OSError(f"broker refused the connection: {connack!r}")
        self.sock.setblocking(False)

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        self._mid = self._mid % 65535 + 1
        body = _utf8(topic) + self._mid.to_bytes(2, "big") + payload
        return b"\x32" + _remaining_length(len(body)) + body

    def send(self, packets: list[bytes]) -> None:
        data = memoryview(b"".join(packets))
        while data:
            try:
                n = self.sock.send(data)
                data = data[n:]
            except BlockingIOError:
                select.select([self.sock], [self.sock], [], 0.05)
                self.read_acks(0.0)
        self.sent += len(packets)

    def read_acks(self, timeout: float) -> None:
        """Consume what the broker sent (PUBACKs), waiting up to `timeout` for the first byte."""
        if timeout > 0:
            select.select([self.sock], [], [], timeout)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                raise OSError("broker closed the connection")
            self._buf += chunk
        buf, pos = self._buf, 0
        whole = len(buf) - len(buf) % 4
        if whole and buf[0:whole:4].count(0x40) == whole // 4 and buf[1:whole:4].count(2) == whole // 4:
            # only PUBACKs (4 bytes each) come back: count them at C speed, not packet by packet
            self.acked += whole // 4
            pos = whole
        while len(buf) - pos >= 2:
            kind, mult, length, i = buf[pos], 1, 0, pos + 1
            while i < len(buf):
                length += (buf[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            else:
                break
            if len(buf) - i < length:
                break
            if kind >> 4 == 4:  # PUBACK
                self.acked += 1
            pos = i + length
        self._buf = buf[pos:]

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()


def _publisher(spec: LoadSpec, part: int, start_at: float, out: Any) -> None:
    """Child process: connect, wait for `start_at`, publish this part's devices, report."""
    mine = [i for i in range(spec.devices) if i % spec.processes == part]
    ids = [device_id(i).encode() for i in mine]
    topics = [topic_for(spec.topic_prefix, device_id(i)).encode() for i in mine]
    rate = None if spec.rate is None else spec.rate / spec.processes
    total = int(rate * spec.duration_s) if rate is not None else 10**9
    result = LoadResult()
    try:
        account = spec.accounts[part] if spec.accounts else None
        client = QosOnePublisher(spec.host, spec.port, f"bench-pub-{part}-{int(start_at)}", account=account)
        proc = psutil.Process()
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = sum(proc.cpu_times()[:2])
        n = len(mine)
        end_at = start_at + spec.duration_s
        result.first_send = time.time()
        sent = 0
        while sent < total:
            now = time.time()
            if rate is None and now >= end_at:
                break
            due = sent + 500 if rate is None else min(total, int((now - start_at) * rate) + 1)
            due = min(due, client.acked + client.window)
            packets = []
            for k in range(sent, due):
                slot = k % n
                seq = spec.seq_offset + k // n + 1
                ts = (start_at + k / rate if rate is not None else now) + spec.time_offset_s
                packets.append(client.packet(topics[slot], payload(ids[slot], mine[slot], seq, ts)))
            if packets:
                client.send(packets)
                sent = due
            if rate is not None:
                lag = now - (start_at + sent / rate)
                result.max_lag_s = max(result.max_lag_s, lag)
                # send in bursts every TICK_S (few syscalls per message); behind schedule: no pause
                client.read_acks(TICK_S if lag < TICK_S else 0.0)
            else:
                client.read_acks(0.0 if sent - client.acked < client.window else 0.002)
        result.last_send = time.time()
        deadline = time.monotonic() + 60
        while client.acked < sent and time.monotonic() < deadline:
            client.read_acks(0.05)
        result.cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        result.published, result.acked = sent, client.acked
        if client.acked < sent:
            result.errors.append(f"publisher {part}: {sent - client.acked} messages not PUBACKed by the broker")
        client.close()
    except OSError as exc:
        result.errors.append(f"publisher {part}: {exc}")
    out.put(result)


def run_load(spec: LoadSpec, start_at: float) -> LoadResult:
    """Publish `spec` from `spec.processes` child processes from `start_at` (wall time); block until done."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_publisher, args=(spec, p, start_at, out), daemon=True) for p in range(spec.processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=spec.duration_s + max(0.0, start_at - time.time()) + 120) for _ in procs]
    for p in procs:
        p.join(10)
    total = LoadResult()
    for r in results:
        total.published += r.published
        total.acked += r.acked
        total.cpu_s += r.cpu_s
        total.max_lag_s = max(total.max_lag_s, r.max_lag_s)
        total.errors.extend(r.errors)
    total.first_send = min(r.first_send for r in results)
    total.last_send = max(r.last_send for r in results)
    return total


class BackgroundLoad:
    """`run_load` in a thread, so the caller can sample meters while it runs."""

    def __init__(self, spec: LoadSpec, start_delay_s: float = 3.0) -> None:
        self.spec = spec
        self.result: LoadResult | None = None
        self.started_at = time.time() + start_delay_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.result = run_load(self.spec, self.started_at)

    def join(self) -> LoadResult:
        self._thread.join()
        assert self.result is not None
        return self.result
