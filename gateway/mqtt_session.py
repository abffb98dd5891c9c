"""The gateway's MQTT session: the one owner of its broker connection (asyncio, no threads).

    async with MqttSession(url, "gw-1", ["citysense/v1/+/+/up"]) as session:
        async for message in session.messages():
            ...                                   # store it, then
            session.ack([message])                # PUBACK only once it is committed

Guarantees, and how:
- Persistent session: CONNECT with Clean Session off (3.1.1) or Clean Start off plus a
  Session Expiry Interval (5), a fixed client id, subscriptions at QoS 1. The broker keeps
  QoS 1 messages while the gateway is away and redelivers unacknowledged ones.
- PUBACK only when told: `ack` sends the PUBACKs of committed messages in one write. Each
  message carries the generation (connection number) it arrived on; `ack` drops those of
  an earlier connection, whose packet ids mean nothing on the new one (the broker
  redelivers those messages there instead, MQTT 3.1.1 §4.4, 5.0 §4.4).
- Back-pressure: received PUBLISH packets go into a bounded queue; when it is full the
  session stops reading the socket, so the rest waits in TCP and at the broker. At most one
  receive chunk (256 KB, asyncio's read size) waits parsed-not-queued in memory.
- Keep alive: a PINGREQ when nothing was sent for the keep-alive interval or nothing was
  heard for half of it; silence for 1.5 intervals while reading ends the connection.
- Reconnect with backoff (0.5 s doubling to 15 s) until `close`; TLS for mqtts:// URLs.
- Publish at QoS 0, or at QoS 1 awaiting the broker's PUBACK (resent with DUP after a
  reconnect, within the broker's Receive Maximum).
- Clean shutdown: stop reading, DISCONNECT, then read until the broker closes, so no RST
  discards the last PUBACKs (which would bring those messages back as duplicates).

The bytes on the wire are gateway/mqtt_wire.py's; this module does the I/O and the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

from contracts.urls import parse_mqtt_url
from gateway import mqtt_wire as wire
from gateway import telemetry

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 65535  # ack-after-commit needs a whole batch of messages in flight
# Largest packet the gateway reads. Well above the largest payload the codecs decode
# (contracts.limits.MAX_PAYLOAD_BYTES), so a payload between the two is dead-lettered with its
# size; an MQTT 5 broker drops larger ones for us (our Maximum Packet Size), under 3.1.1 one
# ends the connection (the broker's own max_packet_size should be below this).
MAX_PACKET_BYTES = 4 * 1024 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 15.0
LINGER_S = 3.0


@dataclass(slots=True)
class Inbound:
    """A received PUBLISH, as the pipeline sees it."""

    topic: str
    payload: bytes
    packet_id: int  # 0 at QoS 0
    qos: int
    received_at: float  # Unix seconds
    generation: int  # the connection it arrived on (1, 2, ...)


class MqttRefused(Exception):
    """The broker refused something the session asked for (CONNECT, a publish)."""


class _Outgoing:
    """A QoS 1 publish waiting for its PUBACK."""

    __slots__ = ("future", "packet", "sent")

    def __init__(self, packet: bytes, future: asyncio.Future[None]) -> None:
        self.packet = packet
        self.future = future
        self.sent = False


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: turns bytes into packets and hands them to the session."""

    def __init__(self, session: MqttSession, generation: int) -> None:
        self.session = session
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.pos = 0  # bytes of `buf` before this are consumed
        self.paused = False  # reading stopped because the queue is full (or for good)
        self.discarding = False  # after our DISCONNECT: read and drop until the broker closes
        self.connack: asyncio.Future[wire.Connack] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribe_packet_id = 0
        self.last_received = self.last_sent = time.monotonic()
        self.ping_sent_at = 0.0

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"connection closed before CONNACK: {exc or 'EOF'}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        if self.discarding:
            return
        self.buf = self.buf[self.pos :] + data if self.pos < len(self.buf) else data
        self.pos = 0
        self.parse()

    # -- writing
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def abort(self, reason: str, reason_code: int | None = None) -> None:
        """End the connection at once; in MQTT 5 with a DISCONNECT saying why."""
        log.warning("event=mqtt_connection_aborted reason=%r generation=%d", reason, self.generation)
        if reason_code is not None and self.session.protocol == wire.PROTOCOL_5:
            self.send(wire.build_disconnect(wire.PROTOCOL_5, reason_code))
        if self.transport is not None:
            self.transport.close()  # after what is buffered for writing

    # -- reading
    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.last_received = time.monotonic()  # silence while we did not listen proves nothing
            self.parse()
            if not self.paused and self.transport is not None:
                self.transport.resume_reading()

    def parse(self) -> None:
        """Take every whole packet of the buffer, PUBLISH into the queue while it has room.

        Runs of PUBLISH go through `take_publishes` in one pass; every other packet (and any
        PUBLISH it leaves) through `read_frame` and the careful parsers.
        """
        session = self.session
        queue = session.queue
        protocol = session.protocol
        buf = self.buf
        pos = self.pos
        before = len(queue)
        generation = self.generation
        received_at = time.time()
        append = queue.append

        def sink(topic: str, payload: bytes, packet_id: int, qos: int) -> None:
            append(Inbound(topic, payload, packet_id, qos, received_at, generation))

        try:
            while pos < len(buf):
                room = 0 if session.reading_stopped else session.max_queue - len(queue)
                if room > 0:
                    pos = wire.take_publishes(buf, pos, protocol, sink, room)
                    if pos >= len(buf):
                        break
                frame = wire.read_frame(buf, pos, MAX_PACKET_BYTES)
                if frame is None:
                    break
                if frame.packet_type == wire.PUBLISH:
                    if len(queue) >= session.max_queue or session.reading_stopped:
                        self.pause()
                        break
                    publish = wire.parse_publish(buf, frame, protocol)
                    append(Inbound(publish.topic, publish.payload, publish.packet_id, publish.qos, received_at,
                                   generation))
                else:
                    self.dispatch(buf, frame)
                pos = frame.end
        except wire.MqttProtocolError as exc:
            self.abort(str(exc), exc.reason_code)
            pos = len(buf)
        self.pos = pos
        if len(queue) >= session.max_queue or session.reading_stopped:
            self.pause()
        if len(queue) != before:
            session.data_ready.set()

    def dispatch(self, buf: bytes, frame: wire.Frame) -> None:
        """Every packet but PUBLISH."""
        protocol = self.session.protocol
        kind = frame.packet_type
        if kind == wire.PUBACK:
            ack = wire.parse_puback(buf, frame, protocol)
            self.session.on_puback(ack)
        elif kind == wire.PINGRESP:
            if frame.end != frame.body or frame.first_byte != wire.PINGRESP:
                raise wire.MqttProtocolError("PINGRESP with a body or flags")
            self.ping_sent_at = 0.0
        elif kind == wire.CONNACK:
            if self.connack.done():
                raise wire.MqttProtocolError("a second CONNACK", wire.PROTOCOL_ERROR)
            connack = wire.parse_connack(buf, frame, protocol)
            if connack.accepted:
                # at once, before the backlog right behind it in this buffer is parsed and can be acked
                self.session.on_connack(self, connack)
            self.connack.set_result(connack)
        elif kind == wire.SUBACK:
            suback = wire.parse_suback(buf, frame, protocol)
            if suback.packet_id != self.subscribe_packet_id:
                raise wire.MqttProtocolError(f"SUBACK for packet {suback.packet_id}, never sent", wire.PROTOCOL_ERROR)
            self.session.on_suback(self, suback)
        elif kind == wire.DISCONNECT:
            code, props = wire.parse_disconnect(buf, frame, protocol)
            log.warning(
                "event=mqtt_broker_disconnected reason=%r detail=%r", wire.reason_name(code),
                wire.property_str(props, wire.REASON_STRING) or "",
            )
            if self.transport is not None:
                self.transport.close()
        else:
            raise wire.MqttProtocolError(f"unexpected packet type 0x{kind:02x} from the broker", wire.PROTOCOL_ERROR)


class MqttSession:
    """A persistent MQTT session delivering messages into a bounded queue (see the module doc).

    `protocol` is "5" or "3.1.1"; `max_queue` bounds the messages held in memory; `ssl_context`
    overrides the default TLS context of mqtts:// URLs (a private CA, client certificates).
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        topics: list[str],
        *,
        protocol: str = "5",
        max_queue: int = 20_000,
        keepalive_s: int = 30,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol must be '5' or '3.1.1', got {protocol!r}")
        self.endpoint = parse_mqtt_url(url)
        self.client_id = client_id
        self.topics = topics
        self.protocol = wire.PROTOCOL_5 if protocol == "5" else wire.PROTOCOL_311
        self.max_queue = max_queue
        self.keepalive_s = keepalive_s
        self.ssl_context = ssl_context if ssl_context is not None else (
            ssl.create_default_context() if self.endpoint.tls else None
        )
        self.queue: deque[Inbound] = deque()
        self.data_ready = asyncio.Event()
        self.connected = asyncio.Event()  # CONNACK accepted on the current connection
        self.subscribed = asyncio.Event()  # and its SUBACK arrived (possibly behind a backlog)
        self.generation = 0
        self.reading_stopped = False
        self.session_present = False
        self._conn: _Connection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._packet_ids = itertools.cycle(range(1, 0x10000))
        self._outgoing: dict[int, _Outgoing] = {}
        self._unsent: deque[int] = deque()  # QoS 1 publishes waiting for room in the broker's window
        self._in_flight = 0
        self._broker_receive_maximum = 65535
        self._broker_maximum_qos = 1
        self._keepalive_interval: float = keepalive_s  # the broker's Server Keep Alive overrides it

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> MqttSession:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def start(self) -> asyncio.Task[None]:
        """Start connecting (and reconnecting) in the background; the task ends only with `close`
        or a bug, which the caller may watch it for."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="mqtt-session")
        return self._runner

    async def close(self) -> None:
        """Stop reading, DISCONNECT (the session stays with the broker) and wait for the broker
        to close the connection; pending QoS 1 publishes fail with ConnectionError."""
        self._closing = True
        self.stop_reading()
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.send(wire.build_disconnect(self.protocol))
            conn.discarding = True
            conn.transport.resume_reading()  # drain until the broker's EOF, so no RST (see module doc)
            await asyncio.wait([conn.closed], timeout=LINGER_S)
            if conn.transport is not None:
                conn.transport.abort()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for pending in self._outgoing.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("MQTT session closed before the broker's PUBACK"))
        self._outgoing.clear()
        self._set_disconnected()

    async def _run(self) -> None:
        delay = BACKOFF_MIN_S
        while not self._closing:
            try:
                conn = await self._connect()
            except (OSError, MqttRefused, wire.MqttProtocolError) as exc:
                log.warning("event=mqtt_connect_failed error=%r retry_in_s=%.1f", str(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = BACKOFF_MIN_S
            keepalive = asyncio.create_task(self._keep_alive(conn, self._keepalive_interval), name="mqtt-keepalive")
            try:
                await asyncio.shield(conn.closed)  # (a cancelled runner must not cancel the future)
            finally:
                keepalive.cancel()
            self._set_disconnected()
            if not self._closing:
                log.warning("event=mqtt_disconnected generation=%d", conn.generation)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        generation = self.generation + 1
        endpoint = self.endpoint
        transport, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Connection(self, generation), endpoint.host, endpoint.port, ssl=self.ssl_context
            ),
            HANDSHAKE_TIMEOUT_S,
        )
        try:
            conn.send(wire.build_connect(
                self.client_id, protocol=self.protocol, keepalive_s=self.keepalive_s, clean_start=False,
                session_expiry_s=SESSION_EXPIRY_S, receive_maximum=RECEIVE_MAXIMUM,
                maximum_packet_size=MAX_PACKET_BYTES, username=endpoint.username, password=endpoint.password,
            ))
            connack = await asyncio.wait_for(conn.connack, HANDSHAKE_TIMEOUT_S)
            if not connack.accepted:
                raise MqttRefused(f"broker refused CONNECT: {wire.reason_name(connack.reason_code, self.protocol)}")
        except BaseException:
            transport.abort()
            self._set_disconnected()
            raise
        # The SUBACK is not waited for: a persistent session's backlog arrives ahead of it and
        # may fill the queue, and then the SUBACK waits in TCP until the pipeline takes some.
        conn.subscribe_packet_id = self._next_packet_id()
        options = wire.subscription_options(1)
        conn.send(wire.build_subscribe(conn.subscribe_packet_id, [(t, options) for t in self.topics], self.protocol))
        return conn

    def on_suback(self, conn: _Connection, suback: wire.Suback) -> None:
        if suback.refused:
            log.error(
                "event=mqtt_subscribe_refused reasons=%s generation=%d",
                ",".join(wire.reason_name(c) for c in suback.refused),  # 0x80 is 3.1.1's one failure code too
                conn.generation,
            )
        else:
            log.info("event=mqtt_subscribed topics=%d generation=%d", len(self.topics), conn.generation)
        self.subscribed.set()

    def on_connack(self, conn: _Connection, connack: wire.Connack) -> None:
        """The connection is up: its generation starts, pending publishes go out again."""
        self.generation = conn.generation
        self._conn = conn
        self.session_present = connack.session_present
        props = connack.properties
        self._broker_receive_maximum = wire.property_int(props, wire.RECEIVE_MAXIMUM) or 65535
        maximum_qos = wire.property_int(props, wire.MAXIMUM_QOS)
        self._broker_maximum_qos = 1 if maximum_qos is None else maximum_qos
        server_keepalive = wire.property_int(props, wire.SERVER_KEEP_ALIVE)
        self._keepalive_interval = self.keepalive_s if server_keepalive is None else server_keepalive
        if self.reading_stopped:
            conn.pause()
        self.connected.set()
        telemetry.MQTT_CONNECTED.set(1)
        log.info(
            "event=mqtt_connected session_present=%s generation=%d", connack.session_present, conn.generation
        )
        # QoS 1 publishes not yet acknowledged go out again, with DUP (§4.4 in both versions)
        self._unsent = deque(self._outgoing)
        self._in_flight = 0
        for packet_id in self._unsent:
            pending = self._outgoing[packet_id]
            if pending.sent:
                pending.packet = bytes([pending.packet[0] | 0x08]) + pending.packet[1:]
            pending.sent = False
        self._send_unsent()

    def _set_disconnected(self) -> None:
        self.connected.clear()
        self.subscribed.clear()
        telemetry.MQTT_CONNECTED.set(0)
        self._conn = None

    async def _keep_alive(self, conn: _Connection, interval: float) -> None:
        """PINGREQ when the link has been quiet; abort a connection that stopped answering."""
        if interval <= 0:
            return
        while conn.transport is not None:
            await asyncio.sleep(min(interval / 4, 5.0))
            now = time.monotonic()
            if conn.paused:
                conn.last_received = now  # not listening: the broker's bytes wait in TCP
            if now - conn.last_received >= 1.5 * interval:
                conn.abort(f"nothing heard from the broker for {now - conn.last_received:.1f} s")
                return
            quiet_out = now - conn.last_sent >= interval * 0.75
            quiet_in = now - conn.last_received >= interval / 2
            if (quiet_out or quiet_in) and now - conn.ping_sent_at >= interval / 2:
                conn.ping_sent_at = now
                conn.send(wire.PINGREQ_PACKET)

    # -- receiving ----------------------------------------------------------------------------
    async def wait_for_data(self, timeout: float) -> None:
        """Return when the queue holds a message, when `wake` is called (the queue may then be
        empty), or after `timeout` seconds."""
        if self.queue:
            return
        self.data_ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.data_ready.wait(), timeout)

    def wake(self) -> None:
        """End a `wait_for_data` now, data or not (the pipeline's committer, free for a batch)."""
        self.data_ready.set()

    def take(self, limit: int) -> list[Inbound]:
        """Up to `limit` messages off the queue, oldest first; reading resumes below half full."""
        queue = self.queue
        count = min(limit, len(queue))
        out = [queue.popleft() for _ in range(count)]
        conn = self._conn
        if conn is not None and conn.paused and not self.reading_stopped and len(queue) < self.max_queue // 2:
            conn.resume()
        return out

    async def messages(self) -> AsyncIterator[Inbound]:
        """Every message as it arrives, one at a time (the pipeline takes batches with `take`)."""
        while True:
            while not self.queue:
                await self.wait_for_data(1.0)
            for message in self.take(len(self.queue)):
                yield message

    def stop_reading(self) -> None:
        """Read nothing more (shutdown): what the socket still holds stays with the broker."""
        self.reading_stopped = True
        if self._conn is not None:
            self._conn.pause()

    def ack(self, messages: list[Inbound]) -> int:
        """PUBACK the QoS 1 messages of the current connection in one write; returns how many.

        Messages of an earlier connection are skipped: their packet ids are not this
        connection's, and the broker redelivers them on it anyway.
        """
        conn = self._conn
        if conn is None or not self.connected.is_set():
            return 0
        generation = conn.generation
        packet_ids = [m.packet_id for m in messages if m.qos == 1 and m.generation == generation]
        if packet_ids:
            conn.send(wire.build_pubacks(packet_ids))
        return len(packet_ids)

    # -- publishing ------------------------------------------------------------------------------
    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish; at QoS 1 return once the broker's PUBACK arrives (across reconnects).

        Raises MqttRefused when an MQTT 5 broker answers with an error reason code, and
        ConnectionError when the session closes first. At QoS 0 the message is dropped while
        disconnected, as QoS 0 allows.
        """
        if qos > self._broker_maximum_qos:
            raise MqttRefused(f"the broker accepts QoS {self._broker_maximum_qos} at most")
        if self._closing:
            raise ConnectionError("MQTT session is closed")
        if qos == 0:
            if self._conn is not None:
                self._conn.send(wire.build_publish(topic, payload, protocol=self.protocol, retain=retain))
            return
        packet_id = self._next_packet_id()
        packet = wire.build_publish(topic, payload, protocol=self.protocol, qos=1, packet_id=packet_id, retain=retain)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing[packet_id] = _Outgoing(packet, future)
        self._unsent.append(packet_id)
        self._send_unsent()
        await future

    def _send_unsent(self) -> None:
        conn = self._conn
        if conn is None or not self.connected.is_set():
            return
        while self._unsent and self._in_flight < self._broker_receive_maximum:
            pending = self._outgoing.get(self._unsent.popleft())
            if pending is None or pending.sent:
                continue
            conn.send(pending.packet)
            pending.sent = True
            self._in_flight += 1

    def on_puback(self, ack: wire.Puback) -> None:
        pending = self._outgoing.pop(ack.packet_id, None)
        if pending is None:
            return  # a PUBACK for a publish of an earlier connection already answered
        if pending.sent:
            self._in_flight -= 1
        if not pending.future.done():
            if ack.reason_code >= 0x80:
                reason = wire.reason_name(ack.reason_code)
                pending.future.set_exception(MqttRefused(f"broker refused publish: {reason}"))
            else:
                pending.future.set_result(None)
        self._send_unsent()

    def _next_packet_id(self) -> int:
        """The next packet id not held by a publish awaiting its PUBACK."""
        for _ in range(0x10000):
            packet_id = next(self._packet_ids)
            if packet_id not in self._outgoing:
                return packet_id
        raise MqttRefused("all 65535 packet identifiers are awaiting PUBACK")
