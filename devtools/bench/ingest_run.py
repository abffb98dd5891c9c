"""`citysense bench ingest`: the gateway against its limits and a naive baseline, in one run.

Phases, each on fresh servers' state where it matters:
1. gateway at the offered rate: sustained accepted msg/s (PUBACKs sent after commit, from
   the gateway's own counter over the steady window), latency, CPU of every component;
2. gateway at half the rate it sustained in 1: the latency that matters in production;
   then every message the broker accepted must be a stored row (no loss);
3. limit (a): asyncpg binary COPY of the very rows phase 1-2 stored, into an empty table;
4. limit (b): the same payload stream through a fresh Mosquitto to a counting paho subscriber;
5. naive: one autocommit INSERT per message, same stream, fresh broker and database;
6. with `--peer node-red`: the Node-RED flow a maker builds (devtools/bench/node_red_peer.py),
   same stream at the full offered rate, then a kill -9 in the middle of a second stream to
   count what it acknowledged and never wrote.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt
import psutil
import psycopg

from contracts.settings import Settings
from devtools.bench.latency import CommitProbe, maintenance_effect, summarize
from devtools.bench.limits import CountingSubscriber, copy_limit
from devtools.bench.loadgen import METRICS_PER_MESSAGE, BackgroundLoad, LoadResult, LoadSpec, device_id
from devtools.bench.naive import NaiveSubscriber
from devtools.bench.node_red_peer import NodeRedPeer, NodeRedUnavailable, install
from devtools.bench.profile import Profiler
from devtools.bench.servers import BenchServers, CpuMeter, GatewayGroup, with_children
from ingest.device_store import DeviceFields
from ingest.device_store import register_devices as register_fleet_devices

log = logging.getLogger(__name__)

ACKED = "citysense_gateway_messages_acked_total"
ROWS = "citysense_gateway_rows_written_total"


@dataclass(frozen=True)
class IngestOptions:
    devices: int = 1000
    rate: float = 30_000.0  # above what a 2-core machine takes (11-23k msg/s): full load must saturate
    duration_s: float = 30.0
    limit_s: float = 10.0
    publishers: int = 2
    probes: int = 20
    gateways: int = 1
    quick: bool = False
    profile: bool = False  # py-spy on the gateway during the full-load window
    peer: str | None = None  # "node-red": the maker's flow in the same run
    closed_broker: bool = True  # production's listener: passwords, ACL, each client's session its username

    @classmethod
    def quick_run(cls) -> IngestOptions:
        return cls(devices=50, rate=2000.0, duration_s=6.0, limit_s=3.0, publishers=1, probes=5, quick=True)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
        return int(row[0]) if row else 0


def _wait(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class IngestBench:
    def __init__(self, options: IngestOptions) -> None:
        self.o = options
        self.servers = BenchServers(fsync=True)
        self.settings = Settings()
        self.batch_messages = self.settings.batch_max_messages
        self.results: dict[str, Any] = {}
        self._acked_before: float = 0.0
        self.broker_port = 0
        self.loaders: tuple[tuple[str, str], ...] = ()
        self.gateway_db = ""

    # -- gateway phases ---------------------------------------------------------------------
    def _gateway_phase(
        self, gw: GatewayGroup, broker_pid: int | None, db: str, rate: float, seq_offset: int, profile: bool = False
    ) -> tuple[dict[str, Any], LoadResult]:
        o = self.o
        spec = LoadSpec(
            "127.0.0.1", self.broker_port, o.devices, rate, o.duration_s, processes=o.publishers, seq_offset=seq_offset,
            accounts=self.loaders,
        )
        probe = CommitProbe(db, [device_id(i) for i in range(min(o.probes, o.devices))], since=time.time() - 1)
        load = BackgroundLoad(spec)
        warmup = max(1.0, 0.2 * o.duration_s)
        meter = CpuMeter({
            "gateway": gw.processes,
            "broker": lambda: with_children(broker_pid),
            "postgres": lambda: with_children(self.servers.postgres_pid()),
        })
        window_start = load.started_at + warmup
        time.sleep(max(0.0, window_start - time.time()))
        meter.start()
        acked0, rows0, t0 = gw.metric(ACKED), gw.metric(ROWS), time.monotonic()
        profiler = None
        if profile:
            pid = gw.members[0].proc.pid
            window = load.started_at + o.duration_s - time.time()
            profiler = Profiler(pid, window - 1.0, self.servers.root / "gateway-profile.txt")
        time.sleep(max(0.0, load.started_at + o.duration_s - time.time()))
        acked1, rows1, t1 = gw.metric(ACKED), gw.metric(ROWS), time.monotonic()
        cpu = meter.stop()
        result = load.join()
        window_end = result.last_send
        drained = _wait(lambda: gw.metric(ACKED) >= self._acked_before + result.acked, 30 + result.published / 2000)
        samples = probe.stop()
        self._acked_before = gw.metric(ACKED)
        latency = summarize([lat for ts, lat in samples if window_start <= ts <= window_end])
        publish_span = max(1e-9, result.last_send - result.first_send)
        cpu["load generator"] = round(100 * result.cpu_s / publish_span, 1)
        cpu["latency probe"] = round(100 * probe.cpu_s / max(1e-9, time.time() - load.started_at), 1)
        accepted = (acked1 - acked0) / (t1 - t0)
        phase = {
            "offered_msg_s": round(rate, 1),
            "published_msg_s": round(result.rate, 1),
            "publisher_max_lag_s": round(result.max_lag_s, 3),
            "accepted_msg_s": round(accepted, 1),
            "readings_s": round((rows1 - rows0) / (t1 - t0), 1),
            "window_s": round(t1 - t0, 2),
            "published": result.published,
            "drained": drained,
            "latency_ms": asdict(latency),
            "cpu_pct": cpu,
            "errors": result.errors,
            "server_maintenance": maintenance_effect(samples, probe.maintenance, window_start, window_end),
        }
        if profiler is not None:
            phase["profile"] = profiler.summary()
        return phase, result

    def _run_gateway(self, *, plain: bool = False) -> dict[str, Any]:
        """Full load, then half of what full load accepted, on one gateway group and one database:
        the gateway's phases, what was lost, and the database (the COPY limit replays its rows)."""
        o = self.o
        name = "bench_gateway_plain" if plain else "bench_gateway"
        db = self.servers.database(name, plain=plain)
        register_devices(db, o.devices)
        if o.closed_broker:
            closed = self.servers.start_closed_broker(name, db, o.gateways, o.publishers)
            broker, gateway_urls, self.loaders = closed.broker, closed.gateway_urls, closed.loaders
        else:
            broker = self.servers.start_broker(name)
            gateway_urls, self.loaders = [broker.url] * o.gateways, ()
        self.broker_port = broker.port
        logs = self.servers.root / name
        logs.mkdir(exist_ok=True)
        gw = GatewayGroup(o.gateways, gateway_urls, db, logs)
        self._acked_before = 0.0
        try:
            gw.wait_ready()
            broker_pid = self.servers.broker_pid(broker)
            full, load_a = self._gateway_phase(gw, broker_pid, db, o.rate, 0, profile=o.profile and not plain)
            half_rate = 0.5 * min(o.rate, full["accepted_msg_s"] or o.rate)
            half, load_b = self._gateway_phase(gw, broker_pid, db, half_rate, 10_000_000)
        finally:
            acked = gw.metric(ACKED)
            gw.stop()
        published = load_a.acked + load_b.acked
        stored = _count(db, "SELECT count(*) FROM readings")
        rejected = _count(db, "SELECT count(*) FROM rejected_messages")
        broker.stop()
        return {
            "gateway": full,
            "gateway_half_rate": half,
            "loss": {
                "published_and_broker_acked": published,
                "gateway_acked": int(acked),
                "readings_expected": published * METRICS_PER_MESSAGE,
                "readings_stored": stored,
                "rejected_messages": rejected,
                "lost_messages": max(0, published - stored // METRICS_PER_MESSAGE),
            },
            "database": db,
        }

    # -- limits and baseline ------------------------------------------------------------------
    def _run_copy(self, source_db: str, *, plain: bool = False) -> dict[str, Any]:
        target = self.servers.database("bench_copy_plain" if plain else "bench_copy", plain=plain)
        batch_rows = self.batch_messages * METRICS_PER_MESSAGE
        meter = CpuMeter({
            "bench (asyncpg)": lambda: [psutil.Process()],
            "postgres": lambda: with_children(self.servers.postgres_pid()),
        })
        meter.start()
        limit = copy_limit(source_db, target, batch_rows)
        cpu = meter.stop()
        return {
            "rows": limit.rows, "batch_rows": batch_rows, "seconds": round(limit.seconds, 3),
            "rows_s": round(limit.rows_s, 1), "msg_s": round(limit.rows_s / METRICS_PER_MESSAGE, 1),
            "cpu_pct": cpu, "note": "CPU includes fetching the rows from the gateway's database",
        }

    def _run_gateway_and_copy(self) -> None:
        run = self._run_gateway()
        self.gateway_db = run.pop("database")
        self.results.update(run)
        self.results["limit_copy"] = self._run_copy(self.gateway_db)

    def _run_plain_backend(self) -> None:
        """On a TimescaleDB server, the same gateway and COPY phases on a plain-PostgreSQL database
        of the same server, so the report compares the two backends in one run."""
        run = self._run_gateway(plain=True)
        run["limit_copy"] = self._run_copy(run.pop("database"), plain=True)
        self.results["plain_postgresql"] = run

    def _run_subscriber_phase(self, name: str, make: Any, rate: float | None) -> dict[str, Any]:
        o = self.o
        broker = self.servers.start_broker(name)
        sub = make(broker)
        broker_pid = self.servers.broker_pid(broker)
        meter = CpuMeter({
            "subscriber": lambda: with_children(sub.process.pid),
            "broker": lambda: with_children(broker_pid),
            "postgres": lambda: with_children(self.servers.postgres_pid()),
        })
        spec = LoadSpec("127.0.0.1", broker.port, o.devices, rate, o.limit_s, processes=o.publishers)
        meter.start()
        load = BackgroundLoad(spec).join()
        res = sub.result(timeout=o.limit_s + 150)
        cpu = meter.stop()
        cpu["load generator"] = round(100 * load.cpu_s / max(1e-9, load.last_send - load.first_send), 1)
        broker.stop()
        return {
            "msg_s": round(res.rate, 1), "messages": res.messages, "published_msg_s": round(load.rate, 1),
            "readings_s": round(res.rate * METRICS_PER_MESSAGE, 1) if res.extra or name == "naive" else None,
            "subscriber_cpu_pct": round(100 * res.cpu_s / max(1e-9, res.last - res.first), 1),
            "cpu_pct": cpu, "errors": load.errors,
        }

    def _run_passthrough(self) -> None:
        window = self.o.limit_s

        def make(broker: Any) -> CountingSubscriber:
            return CountingSubscriber("127.0.0.1", broker.port, "citysense/v1/+/+/up", window)

        self.results["limit_passthrough"] = self._run_subscriber_phase("passthrough", make, None)

    def _run_naive(self) -> None:
        db = self.servers.database("bench_naive")
        window = self.o.limit_s

        def make(broker: Any) -> NaiveSubscriber:
            return NaiveSubscriber("127.0.0.1", broker.port, "citysense/v1/+/+/up", db, window)

        rate = min(self.o.rate, 4000.0)  # far above what one INSERT per commit sustains
        phase = self._run_subscriber_phase("naive", make, rate)
        phase["readings_stored"] = _count(db, "SELECT count(*) FROM readings")
        self.results["naive"] = phase

    def _run_node_red(self) -> None:
        try:
            home = install()
        except NodeRedUnavailable as exc:
            self.results["node_red"] = {"skipped": str(exc)}
            return
        o = self.o
        db = self.servers.database("bench_node_red")
        peers: list[NodeRedPeer] = []

        def make(broker: Any) -> NodeRedPeer:
            peers.append(NodeRedPeer(home, broker.port, db, self.servers.root / "node-red"))
            return peers[-1]

        try:
            phase = self._run_subscriber_phase("node-red", make, o.rate)
        finally:
            for peer in peers:
                peer.stop()
        phase["readings_stored"] = _count(db, "SELECT count(*) FROM readings")
        phase["cpu_us_per_msg"] = _us_per_msg(phase["subscriber_cpu_pct"], phase["msg_s"])
        phase["kill9"] = self._node_red_kill9(home)
        phase["flow"] = "mqtt in QoS 1 persistent session -> join 500 msgs or 100 ms -> multi-row INSERT ON CONFLICT"
        self.results["node_red"] = phase

    def _node_red_kill9(self, home: Any) -> dict[str, Any]:
        """A second stream at half the offered rate; Node-RED killed -9 half-way and restarted on
        the same persistent session: what the broker had handed over and it had not written is lost."""
        o = self.o
        db = self.servers.database("bench_node_red_kill")
        broker = self.servers.start_broker("node-red-kill")
        peer = NodeRedPeer(home, broker.port, db, self.servers.root / "node-red-kill")
        try:
            spec = LoadSpec("127.0.0.1", broker.port, o.devices, o.rate / 2, o.limit_s, processes=o.publishers,
                            seq_offset=20_000_000)
            load = BackgroundLoad(spec)
            time.sleep(max(0.0, load.started_at + o.limit_s / 2 - time.time()))
            peer.kill9()
            peer.restart()
            result = load.join()
            peer.result(timeout=o.limit_s + 60)
        finally:
            peer.stop()
            broker.stop()
        stored = _count(db, "SELECT count(*) FROM readings") // METRICS_PER_MESSAGE
        return {"published_and_broker_acked": result.acked, "stored_messages": stored,
                "lost_messages": max(0, result.acked - stored)}

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        o = self.o
        started = time.time()
        self.results = {
            "kind": "ingest",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "options": asdict(o),
            "gateway_settings": {
                "batch_max_messages": self.batch_messages,
                "batch_max_delay_ms": self.settings.batch_max_delay_ms,
                "queue_max_messages": self.settings.queue_max_messages,
                "mqtt_protocol": self.settings.mqtt_protocol,
                "receipts": self.settings.receipts,
                "receipt_interval_s": self.settings.receipt_interval_s,
            },
            "machine": machine_facts(),
        }
        try:
            backend = self.servers.start_postgres()
            self.results["machine"]["backend"] = backend
            self.results["machine"]["postgres"] = _count_text(self.servers.pg.admin_url, "SHOW server_version")
            self.results["machine"]["broker"] = (
                "closed (password file, ACL, use_username_as_clientid; gateway and load generators on their own "
                "accounts)" if o.closed_broker else "open (anonymous)"
            )
            for name, phase in (
                (f"gateway + raw COPY limit on {backend}", self._run_gateway_and_copy),
                *((("gateway + raw COPY limit on plain PostgreSQL", self._run_plain_backend),)
                  if backend == "timescaledb" else ()),
                ("broker pass-through limit", self._run_passthrough), ("naive baseline", self._run_naive),
                *((("Node-RED peer", self._run_node_red),) if o.peer == "node-red" else ()),
            ):
                t0 = time.monotonic()
                phase()
                log.warning("event=bench_phase_done phase=%r seconds=%.1f", name, time.monotonic() - t0)
        finally:
            self.servers.close()
        self.results["ratios"] = ratios(self.results)
        self.results["cpu_us_per_msg"] = cpu_budget(self.results)
        self.results["targets"] = targets(self.results)
        self.results["elapsed_s"] = round(time.time() - started, 1)
        return self.results


def register_devices(url: str, devices: int) -> None:
    """Register the simulated boxes as a city does at install (PMS5003, so the default
    calibration applies): the gateway does its full production work on every reading."""
    register_fleet_devices(url, [
        (device_id(i), DeviceFields(kind="airbox", name=f"Bench box {i}", lat=25.0 + (i % 40) * 0.004,
                                        lon=121.45 + (i // 40) * 0.006, sensor_type="pms5003", owner="bench"))
        for i in range(devices)
    ])


def _count_text(url: str, sql: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
        return str(row[0]) if row else ""


def machine_facts() -> dict[str, Any]:
    try:
        mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        mosq = "unknown"
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(), "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": mosq, "uvloop": uvloop_version, "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _us_per_msg(cpu_pct: float | None, msg_s: float | None) -> float | None:
    """CPU microseconds per message from a process's CPU share and its rate."""
    return round(cpu_pct / 100 / msg_s * 1e6, 1) if cpu_pct and msg_s else None


def cpu_budget(r: dict[str, Any]) -> dict[str, float | None]:
    """Per accepted gateway message, the CPU microseconds of each component in the full-load window."""
    gw = r.get("gateway", {})
    rate = gw.get("accepted_msg_s")
    return {name: _us_per_msg(pct, rate) for name, pct in gw.get("cpu_pct", {}).items()}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(r: dict[str, Any]) -> dict[str, float | None]:
    gw = r.get("gateway", {}).get("accepted_msg_s")
    copy = r.get("limit_copy", {}).get("msg_s")
    passthrough = r.get("limit_passthrough", {}).get("msg_s")
    lower = min(x for x in (copy, passthrough) if x) if (copy or passthrough) else None
    plain = r.get("plain_postgresql", {})
    plain_gw = plain.get("gateway", {}).get("accepted_msg_s")
    return {
        "gateway_vs_copy_limit": _ratio(gw, copy),
        "plain_gateway_vs_plain_copy_limit": _ratio(plain_gw, plain.get("limit_copy", {}).get("msg_s")),
        "timescaledb_vs_plain_gateway": _ratio(gw, plain_gw),
        "gateway_vs_passthrough_limit": _ratio(gw, passthrough),
        "gateway_vs_lower_limit": _ratio(gw, lower),
        "gateway_vs_naive": _ratio(gw, r.get("naive", {}).get("msg_s")),
        "gateway_vs_node_red": _ratio(gw, r.get("node_red", {}).get("msg_s")),
    }


def targets(r: dict[str, Any]) -> dict[str, bool | None]:
    ratio = r["ratios"]
    p99 = r.get("gateway_half_rate", {}).get("latency_ms", {}).get("p99_ms")
    loss = r.get("loss", {})
    return {
        "sustained_ge_10k_msg_s": (r.get("gateway", {}).get("accepted_msg_s") or 0) >= 10_000,
        "ge_half_of_lower_limit": None if ratio["gateway_vs_lower_limit"] is None
        else ratio["gateway_vs_lower_limit"] >= 0.5,
        "ge_10x_naive": None if ratio["gateway_vs_naive"] is None else ratio["gateway_vs_naive"] >= 10,
        "p99_lt_1s_at_half_rate": None if p99 is None else p99 < 1000,
        "ge_3x_node_red": None if ratio["gateway_vs_node_red"] is None else ratio["gateway_vs_node_red"] >= 3,
        "ge_0_85x_copy_limit": None if ratio["gateway_vs_copy_limit"] is None
        else ratio["gateway_vs_copy_limit"] >= 0.85,
        "p99_lt_250ms_at_half_rate": None if p99 is None else p99 < 250,
        "plain_ge_0_85x_copy_limit": None if ratio["plain_gateway_vs_plain_copy_limit"] is None
        else ratio["plain_gateway_vs_plain_copy_limit"] >= 0.85,
        "timescaledb_ge_0_9x_plain": None if ratio["timescaledb_vs_plain_gateway"] is None
        else ratio["timescaledb_vs_plain_gateway"] >= 0.9,
        "no_loss": loss.get("lost_messages") == 0 and loss.get("readings_stored") == loss.get("readings_expected"),
    }
