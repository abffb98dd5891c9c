"""The only module that touches paho: its callbacks become a bounded asyncio queue.

paho-mqtt 2.x runs on the gateway's event loop through its socket callbacks (no
network thread), with `manual_ack=True`: a message is acknowledged only when the
pipeline calls `ack` after the batch holding it has committed. Every message carries
the connection generation it arrived on; acks for an older connection are dropped,
because the broker redelivers those messages on the new session anyway.

Backpressure: when the queue is full the adapter stops reading the socket, so the
broker keeps the messages (and TCP flow control holds the rest) instead of our memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contracts.urls import parse_mqtt_url
from gateway.publish_reader import take_publishes

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
# Packets read per wake-up (~5 µs each on the fast path, ~30 µs through paho): bounded so
# one read burst never holds the event loop for more than ~10 ms, which the committer's
# database round trips would wait on. What is left is read on the loop's next turn.
READ_BURST = 2000
# One kernel read serves this many bytes of packets (a few hundred PUBLISH packets).
RECV_CHUNK = 256 * 1024
_PUBACK = struct.Struct("!BBH")  # fixed header 0x40, remaining length 2, packet id
_PUBACK_COMMAND = 0x40


class BufferedSocket:
    """The broker's socket, read in large chunks.

    paho reads every packet with at least three `recv` calls (the command byte, each
    remaining-length byte, then the body): three system calls per message, which was the
    largest single cost of the gateway's receive path. This wrapper makes one `recv` of up
    to `RECV_CHUNK` bytes and serves paho's small reads from it. The data it holds is
    invisible to the event loop's readiness check, so the reader drains it before waiting
    again (`pending`, `would_block`).
    """

    __slots__ = ("buf", "pos", "sock", "would_block")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf: bytes = b""  # the last chunk read; bytes before `pos` are consumed
        self.pos = 0
        self.would_block = False

    def recv(self, bufsize: int) -> bytes:
        pos = self.pos
        buf: bytes = self.buf
        if pos >= len(buf):
            try:
                buf = self.sock.recv(RECV_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self.would_block = True  # (TLS wanting to write: paho has registered the writer)
                raise
            if not buf:
                return buf  # end of stream
            self.buf = buf
            pos = 0
        out = buf[pos : pos + bufsize]
        self.pos = pos + len(out)
        return out

    def pending(self) -> int:
        return len(self.buf) - self.pos

    def send(self, buffer: bytes | bytearray) -> int:
        sent: int = self.sock.send(buffer)
        return sent

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        fd: int = self.sock.fileno()
        return fd

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)


class _Client(mqtt.Client):
    """paho's client on a `BufferedSocket`: the one change to paho the gateway makes."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())


@dataclass(slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: float
    generation: int


class MqttSource:
    """A persistent MQTT session delivering messages into a bounded queue."""

    def __init__(
        self,
        url: str,
        client_id: str,
        topics: list[str],
        *,
        protocol: str = "5",
        max_queue: int = 20_000,
    ) -> None:
        self.endpoint = parse_mqtt_url(url)
        self.topics = topics
        self.max_queue = max_queue
        self.protocol = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self.queue: deque[Inbound] = deque()
        self.generation = 0
        self.connected = asyncio.Event()
        self._data_ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading_paused = False
        self._reading_stopped = False  # for good: shutting down
        self._sock: Any = None
        self._misc_task: asyncio.Task[None] | None = None
        self._closing = False
        self._lingering: socket.socket | None = None
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": self.protocol, "manual_ack": True}
        if self.protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = False
        self.client = _Client(CallbackAPIVersion.VERSION2, **kwargs)
        if self.endpoint.username:
            self.client.username_pw_set(self.endpoint.username, self.endpoint.password)
        if self.endpoint.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(65535)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write

    # -- paho callbacks (run on the event loop thread) ---------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("event=mqtt_connect_refused reason=%s", rc)
            return
        self.generation += 1
        log.info(
            "event=mqtt_connected session_present=%s generation=%d", getattr(flags, "session_present", None),
            self.generation,
        )
        client.subscribe([(t, 1) for t in self.topics])
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("event=mqtt_disconnected reason=%s", rc)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        refused = [str(rc) for rc in rcs if rc.is_failure]
        if refused:
            log.error("event=mqtt_subscribe_refused reasons=%s", ",".join(refused))
        else:
            log.info("event=mqtt_subscribed topics=%d generation=%d", len(rcs), self.generation)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # msg.topic raises on invalid UTF-8 (and paho would then retry the same packet forever);
        # decoded as the PUBLISH parser does, the codec dead-letters it instead
        topic = msg._topic.decode("utf-8", "replace")
        self.queue.append(Inbound(topic, bytes(msg.payload), msg.mid, msg.qos, time.time(), self.generation))

    def _on_socket_open(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._sock = sock
        self._reading_paused = False
        self._loop.add_reader(sock, self._read)

    def _on_socket_close(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None
        self.connected.clear()
        if self._closing and self._lingering is None:
            # paho closes right after DISCONNECT; keep a duplicate of the TCP socket (also under
            # TLS, whose sockets refuse dup()) so `close` can linger (see `_linger`)
            with contextlib.suppress(OSError):
                self._lingering = socket.socket(fileno=os.dup(sock.fileno()))

    def _on_register_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    # -- reading with backpressure -------------------------------------------------------
    def _read(self) -> None:
        """Read until the socket would block, the queue is full or the burst bound.

        Whole QoS 0/1 PUBLISH packets already in the buffer are parsed here in one pass
        (`publish_reader`); paho's `loop_read` takes one packet per call for the rest,
        including the first of each chunk (its read refills the buffer). Stopping at the
        bound with bytes still buffered schedules the next burst: the kernel socket may
        already be empty, so its readiness would never wake us for them.
        """
        sock = self._sock
        if sock is None or self._reading_paused:
            return
        before = len(self.queue)
        sock.would_block = False
        client = self.client
        mqtt5 = self.protocol == mqtt.MQTTv5
        received_at = time.time()
        append = self.queue.append

        def sink(topic: str, payload: bytes, mid: int, qos: int) -> None:
            # the generation is read per message: a CONNACK handled by paho within this burst
            # starts a new one, and the publishes right behind it belong to it
            append(Inbound(topic, payload, mid, qos, received_at, self.generation))

        budget = READ_BURST
        while budget > 0:
            # between packets (paho holds no partial one) with bytes buffered: the fast path
            in_packet = client._in_packet
            if sock.pending() and in_packet["command"] == 0 and not in_packet["have_remaining"]:
                room = min(budget, self.max_queue - len(self.queue))
                start = sock.pos
                n = len(self.queue)
                sock.pos = take_publishes(sock.buf, start, mqtt5, sink, room)
                if sock.pos != start:
                    budget -= len(self.queue) - n
                    client._last_bytes_received = mqtt.time_func()  # paho's keepalive clock
                    if len(self.queue) >= self.max_queue:
                        self._pause_reading()
                        break
                    continue
            budget -= 1
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or sock.would_block or self._sock is not sock:
                break
            if len(self.queue) >= self.max_queue:
                self._pause_reading()
                break
        else:
            if self._loop is not None:
                self._loop.call_soon(self._read)
        if len(self.queue) != before:
            self._data_ready.set()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)
            self._reading_paused = True

    def resume_reading(self) -> None:
        """Called by the consumer after taking messages off the queue."""
        if (
            self._reading_paused and not self._reading_stopped
            and len(self.queue) < self.max_queue // 2 and self._sock is not None
        ):
            assert self._loop is not None
            self._reading_paused = False
            self._loop.add_reader(self._sock, self._read)
            self._read()

    def stop_reading(self) -> None:
        """Read nothing more (shutdown): what the socket still holds stays with the broker."""
        self._reading_stopped = True
        self._pause_reading()

    async def wait_for_data(self, timeout: float) -> None:
        if self.queue:
            return
        self._data_ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._data_ready.wait(), timeout)

    def take(self, limit: int) -> list[Inbound]:
        out: list[Inbound] = []
        queue = self.queue
        while queue and len(out) < limit:
            out.append(queue.popleft())
        self.resume_reading()
        return out

    # -- acknowledgement -------------------------------------------------------------------
    def ack(self, messages: list[Inbound]) -> int:
        """PUBACK the committed messages of the current connection, in arrival order.

        All PUBACKs of a batch go out as one write: paho's `ack` queues one packet (and one
        `send`) per message. A PUBACK is 4 bytes in MQTT 3.1.1 and also in MQTT 5, where a
        success reason code without properties may be left out. It goes through paho's own
        output queue so it can never interleave with a packet paho is part-way through
        writing. QoS 2 (never subscribed to) would still take paho's per-message path.
        """
        if not self.connected.is_set():
            return 0
        generation = self.generation
        pack = _PUBACK.pack
        mids = [m.mid for m in messages if m.qos == 1 and m.generation == generation]
        if mids:
            data = b"".join([pack(_PUBACK_COMMAND, 2, mid) for mid in mids])
            self.client._packet_queue(_PUBACK_COMMAND, data, 0, 0)
        for m in messages:
            if m.qos == 2 and m.generation == generation:
                self.client.ack(m.mid, m.qos)
                mids.append(m.mid)
        return len(mids)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, and reconnect with backoff, until `stop` is set."""
        self._loop = asyncio.get_running_loop()
        self._misc_task = asyncio.create_task(self._misc_loop(stop))
        delay = 0.5
        first = True
        while not stop.is_set():
            if not self.connected.is_set() and self._sock is None:
                try:
                    await self._connect(first)
                    first = False
                    delay = 0.5
                except OSError as exc:
                    log.warning("event=mqtt_connect_failed error=%r retry_in_s=%.1f", str(exc), delay)
                    await _sleep_or_stop(stop, delay)
                    delay = min(delay * 2, 15.0)
                    continue
            await _sleep_or_stop(stop, 0.5)
        self.stop_reading()  # shutting down: flush what was received, leave the rest to the broker
        self._misc_task.cancel()

    async def _connect(self, first: bool) -> None:
        props = None
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            props.ReceiveMaximum = 65535
        if first:
            kwargs: dict[str, Any] = {"keepalive": 30}
            if self.protocol == mqtt.MQTTv5:
                kwargs["clean_start"] = False
                kwargs["properties"] = props
            self.client.connect(self.endpoint.host, self.endpoint.port, **kwargs)
        else:
            self.client.reconnect()
        # CONNACK arrives through the reader; wait a little for it
        try:
            await asyncio.wait_for(self.connected.wait(), 10)
        except TimeoutError:
            raise OSError("no CONNACK within 10 s") from None

    async def _misc_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._sock is not None:
                self.client.loop_misc()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            self.client.disconnect()
            # let the DISCONNECT packet go out
            for _ in range(20):
                if self._sock is None:
                    break
                self.client.loop_write()
                await asyncio.sleep(0.01)
                if self._sock is not None:
                    self.client.loop_read()
        if self._lingering is not None:
            await _linger(self._lingering)
            self._lingering = None


async def _linger(sock: socket.socket, timeout: float = 3.0) -> None:
    """Half-close and read until the broker closes, then close.

    Closing a socket whose receive buffer holds unread data (the broker keeps sending while
    we shut down) makes the kernel send RST, and a RST makes the broker's kernel discard
    what it has not read yet: the last PUBACKs and the DISCONNECT. Those messages would be
    redelivered to the next session and stored twice. The broker's EOF proves it read them.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        sock.setblocking(False)
        sock.shutdown(socket.SHUT_WR)
        while loop.time() < deadline:
            try:
                if not sock.recv(1 << 16):
                    break
            except BlockingIOError:
                await asyncio.sleep(0.005)
    except OSError:
        pass
    finally:
        sock.close()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
