"""Run the gateway: MQTT session, pipeline tasks, registry listener, periodic refreshes, /metrics,
clean shutdown.

SIGTERM/SIGINT stop reading, flush what was received, commit, acknowledge and disconnect;
a second signal, or 10 s, abandons what is not committed (the broker still holds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading

from prometheus_client import start_http_server

from contracts.settings import Settings
from contracts.urls import redact_url
from gateway import telemetry
from gateway.anomaly_flags import STUCK_SPIKE_RULE
from gateway.calibration_step import Calibrator
from gateway.device_registry import DeviceRegistry
from gateway.mqtt_session import MqttSession
from gateway.pipeline import CONNECTION_ERRORS, Pipeline, collect_garbage_per_batch
from gateway.receipts import Receipts
from ingest.batch_writer import BatchWriter

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 8.0
RECEIPT_GRACE_S = 3.0
V1_TOPICS = ["citysense/v1/+/+/up", "citysense/v1/+/+/status"]
LASS_TOPICS = ["LASS/Test/PM25/#", "LASS/AirBox/#"]  # '#' also matches the parent topic itself


class GatewayStartError(RuntimeError):
    """The gateway cannot start; the text says why and what to change."""


def subscriptions(settings: Settings) -> list[str]:
    chirpstack = [t.strip() for t in settings.chirpstack_topics.split(",") if t.strip()]
    topics = V1_TOPICS + LASS_TOPICS + chirpstack
    if settings.mqtt_shared_group:
        return [f"$share/{settings.mqtt_shared_group}/{t}" for t in topics]
    return topics


async def _refresh_loop(stop: asyncio.Event, registry: DeviceRegistry, calibrator: Calibrator) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 15)
        try:
            await registry.refresh_if_stale()
            await calibrator.refresh_if_stale()
        except CONNECTION_ERRORS as exc:
            log.warning("event=refresh_failed error=%r", str(exc))


async def _initial_load(stop: asyncio.Event, registry: DeviceRegistry, calibrator: Calibrator) -> None:
    """Wait for the database at start-up instead of crashing: it may start after us."""
    delay = 0.5
    while not stop.is_set():
        try:
            await registry.refresh()
            await calibrator.refresh()
            telemetry.DB_UP.set(1)  # reached: an idle gateway must not read as "database down"
            return
        except CONNECTION_ERRORS as exc:
            log.warning("event=database_unreachable error=%r retry_in_s=%.1f", str(exc), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10)


async def run_gateway(settings: Settings, stop: asyncio.Event | None = None) -> Pipeline:
    stop = stop or asyncio.Event()
    hard_stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            hard_stop.set()
        stop.set()
        loop.call_later(SHUTDOWN_GRACE_S, hard_stop.set)

    if threading.current_thread() is threading.main_thread():
        # signals reach only the main thread; a caller embedding the gateway elsewhere sets `stop`
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
    if settings.gateway_metrics_port:
        try:
            start_http_server(
                settings.gateway_metrics_port, addr=settings.gateway_metrics_host, registry=telemetry.REGISTRY
            )
        except OSError as exc:
            raise GatewayStartError(
                f"the gateway's metrics port {settings.gateway_metrics_port} is taken ({exc.strerror}): stop what "
                "holds it, or set CITYSENSE_GATEWAY_METRICS_PORT to another port (0 = no /metrics)"
            ) from None

    registry = DeviceRegistry(
        settings.database_url, settings.accept_unknown_devices, new_per_minute=settings.new_devices_per_minute
    )
    calibrator = Calibrator(settings.database_url)
    await _initial_load(stop, registry, calibrator)
    # a registration, retirement, token or calibration change reaches the models at once
    registry.on_change(calibrator.forget)
    listener_task = asyncio.create_task(registry.listen(stop))
    source = MqttSession(
        settings.mqtt_url, settings.mqtt_client_id, subscriptions(settings),
        protocol=settings.mqtt_protocol, max_queue=settings.queue_max_messages,
    )
    writer = BatchWriter(settings.database_url, STUCK_SPIKE_RULE)
    receipts = Receipts(source, settings.receipt_interval_s) if settings.receipts else None
    pipeline = Pipeline(
        source, writer, registry, calibrator,
        batch_max_messages=settings.batch_max_messages, batch_max_delay_s=settings.batch_max_delay_ms / 1000,
        receipts=receipts,
    )
    collect_garbage_per_batch()  # what start-up loaded is frozen; collections about once a batch
    mqtt_task = source.start()
    refresh_task = asyncio.create_task(_refresh_loop(stop, registry, calibrator))
    batcher = asyncio.create_task(pipeline.batcher(stop))
    committer = asyncio.create_task(pipeline.committer(hard_stop))
    receipt_stop = asyncio.Event()  # receipts go on until the last batch has committed
    receipt_task = asyncio.create_task(receipts.run(receipt_stop)) if receipts is not None else None
    async def announce() -> None:  # started means connected: said once the session is up, not before
        await source.connected.wait()
        log.info(
            "event=gateway_started mqtt=%s topics=%s", redact_url(settings.mqtt_url), ",".join(subscriptions(settings))
        )

    announced = asyncio.create_task(announce())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, mqtt_task, batcher, committer], return_when=asyncio.FIRST_COMPLETED)
    crashed = next((t for t in (mqtt_task, batcher, committer) if t.done() and not stopped.done()), None)
    if crashed is not None:
        # crash-only: a stage that died would leave a process that is up but stores nothing; exit
        # instead, so the supervisor restarts us and the broker redelivers what was not acked
        log.critical("event=gateway_task_died task=%s", crashed.get_coro().__qualname__)  # type: ignore[union-attr]
        stop.set()
        hard_stop.set()
    source.stop_reading()  # flush what was received; the broker keeps the rest
    log.info("event=gateway_stopping queued=%d", len(source.queue))
    await asyncio.wait([batcher, committer], timeout=SHUTDOWN_GRACE_S + 1)
    if receipt_task is not None:
        receipt_stop.set()  # one last round for what the last batches stored
        await asyncio.wait([receipt_task], timeout=RECEIPT_GRACE_S)
        receipt_task.cancel()
    for task in (mqtt_task, refresh_task, listener_task, batcher, committer, stopped, announced):
        task.cancel()
    await source.close()
    await writer.close()
    log.info("event=gateway_stopped committed_messages=%d", pipeline.committed_messages)
    if crashed is not None:
        raise RuntimeError("a gateway task died; see the log above") from crashed.exception()
    return pipeline
