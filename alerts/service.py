"""`citysense alerts run`: the evaluator on a clock and the delivery worker, two tasks of one process.

Each has its own database connection, so a slow receiver holds up neither the evaluation nor
the other's statements; a failed cycle (database restarting) is logged and the next one
reconnects. The evaluator ticks every `alerts_interval_s` from the start of the previous
cycle (a long cycle is followed at once by the next, never by a pile-up); the worker wakes
when a cycle queued messages and at least every half second for retries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from contextlib import suppress

import psycopg
from prometheus_client import start_http_server

from alerts import store
from alerts.delivery import DeliveryWorker, FlagPublisher
from alerts.evaluator import CycleResult, Evaluator
from alerts.rules import RULE_NAMES, RuleBook, load_rules
from alerts.store import AnyConn
from alerts.telemetry import EVALUATION_SECONDS, LAST_EVALUATION, OPEN, REGISTRY, TRANSITIONS
from contracts.settings import Settings
from contracts.urls import redact_url

log = logging.getLogger(__name__)

WORKER_POLL_S = 0.5


class AlertsStartError(RuntimeError):
    """The evaluator cannot start; the text says what to change."""


async def _connect(url: str, name: str) -> AnyConn:
    return await psycopg.AsyncConnection.connect(url, autocommit=True, application_name=name)


async def evaluate_once(conn: AnyConn, evaluator: Evaluator) -> CycleResult:
    """One cycle with its metrics and its log line (`event=alerts_cycle`)."""
    result = await evaluator.run_cycle(conn)
    EVALUATION_SECONDS.observe(result.seconds)
    LAST_EVALUATION.set(time.time())
    for (rule, to), n in result.transitions.items():
        TRANSITIONS.labels(rule, to).inc(n)
    counts = await store.open_counts(conn)
    for rule in {*counts, *RULE_NAMES}:
        OPEN.labels(rule).set(counts.get(rule, 0))
    log.info(
        "event=alerts_cycle seconds=%.3f findings=%d opened=%d resolved=%d messages=%d flags_moved=%d",
        result.seconds,
        result.findings,
        sum(n for (_, to), n in result.transitions.items() if to == "opened"),
        sum(n for (_, to), n in result.transitions.items() if to == "resolved"),
        result.messages,
        result.flags_moved,
    )
    return result


async def _evaluate_forever(settings: Settings, book: RuleBook, wake: asyncio.Event, stop: asyncio.Event) -> None:
    evaluator = Evaluator(book)
    conn: AnyConn | None = None
    while not stop.is_set():
        started = time.monotonic()
        try:
            if conn is None or conn.closed:
                conn = await _connect(settings.database_url, "citysense-alerts-evaluator")
            result = await evaluate_once(conn, evaluator)
            if result.messages:
                wake.set()
        except (psycopg.Error, OSError) as exc:
            log.warning("event=alerts_cycle_failed reason=%r", str(exc))
            if conn is not None:
                with suppress(psycopg.Error, OSError):
                    await conn.close()
            conn = None
        delay = max(0.0, settings.alerts_interval_s - (time.monotonic() - started))
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    if conn is not None:
        await conn.close()


async def _deliver_forever(settings: Settings, wake: asyncio.Event, stop: asyncio.Event) -> None:
    client_id = f"citysense-alerts-{socket.gethostname()}-{os.getpid()}"
    flags = FlagPublisher(settings.mqtt_url, client_id, settings.mqtt_protocol)
    worker = DeliveryWorker(settings, flags)
    conn: AnyConn | None = None
    try:
        while not stop.is_set():
            wake.clear()  # before the pass: a cycle that queues during it wakes the next one at once
            try:
                if conn is None or conn.closed:
                    conn = await _connect(settings.database_url, "citysense-alerts-delivery")
                await worker.deliver_once(conn)
            except (psycopg.Error, OSError) as exc:
                log.warning("event=alerts_delivery_pass_failed reason=%r", str(exc))
                conn = None
            with suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), WORKER_POLL_S)
    finally:
        flags.close()
        if conn is not None:
            await conn.close()


async def run_alerts(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Evaluate and deliver until `stop` is set (the CLI sets it on SIGTERM/SIGINT)."""
    book = load_rules(settings.alerts_rules_file)
    stop = stop or asyncio.Event()
    if settings.alerts_metrics_port:
        try:
            start_http_server(settings.alerts_metrics_port, addr=settings.alerts_metrics_host, registry=REGISTRY)
        except OSError as exc:
            raise AlertsStartError(
                f"cannot serve alert metrics on {settings.alerts_metrics_host}:{settings.alerts_metrics_port} "
                f"({exc.strerror}): "
                "set CITYSENSE_ALERTS_METRICS_PORT to a free port, or 0 for none"
            ) from None
    log.info(
        "event=alerts_started rules_version=%s interval_s=%g database=%s metrics_port=%d",
        book.version,
        settings.alerts_interval_s,
        redact_url(settings.database_url),
        settings.alerts_metrics_port,
    )
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    wake = asyncio.Event()
    await asyncio.gather(_evaluate_forever(settings, book, wake, stop), _deliver_forever(settings, wake, stop))


async def run_once(settings: Settings) -> None:
    """One cycle, then one delivery pass (cron-style use, and a check that the setup works)."""
    book = load_rules(settings.alerts_rules_file)
    try:
        conn = await _connect(settings.database_url, "citysense-alerts-once")
    except psycopg.OperationalError as exc:
        raise AlertsStartError(f"cannot reach the database {redact_url(settings.database_url)}: {exc}") from None
    flags = FlagPublisher(settings.mqtt_url, f"citysense-alerts-once-{os.getpid()}", settings.mqtt_protocol)
    try:
        await evaluate_once(conn, Evaluator(book))
        await DeliveryWorker(settings, flags).deliver_once(conn)
    finally:
        flags.close()
        await conn.close()
