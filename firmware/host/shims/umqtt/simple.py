"""A CPython implementation of the `umqtt.simple.MQTTClient` interface (MQTT 3.1.1).

Host runs only: the real umqtt.simple is installed on devices with `mip` and is
never copied into this repository. This module is written from the MQTT 3.1.1
specification and offers the same methods and semantics the firmware uses:
connect (with last will, user name, password, keepalive, clean session),
publish (QoS 0 and 1; QoS 1 waits for PUBACK), subscribe (waits for SUBACK),
check_msg / wait_msg, ping, disconnect. QoS 2 is refused, like the original.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

Callback = Callable[[bytes, bytes], None]


class MQTTException(Exception):
    """Raised with the CONNACK return code (1..5) or a protocol error code."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def encode_remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def _field(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


class MQTTClient:
    def __init__(
        self,
        client_id: str | bytes,
        server: str,
        port: int = 0,
        user: str | bytes | None = None,
        password: str | bytes | None = None,
        keepalive: int = 0,
        ssl: object = None,
        ssl_params: dict[str, object] | None = None,
    ) -> None:
        if ssl:
            raise ValueError("the host client does not do TLS")
        self.client_id = _as_bytes(client_id)
        self.server = server
        self.port = port or 1883
        self.user = _as_bytes(user) if user else None
        self.pswd = _as_bytes(password) if password else None
        self.keepalive = keepalive
        self.sock: socket.socket | None = None
        self.pid = 0
        self.cb: Callback | None = None
        self.lw: tuple[bytes, bytes, bool, int] | None = None
        self.timeout = 5.0

    # ---- wire helpers --------------------------------------------------

    def _sock(self) -> socket.socket:
        if self.sock is None:
            raise OSError("not connected")
        return self.sock

    def _recv_exact(self, n: int) -> bytes:
        sock = self._sock()
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise OSError("connection closed by broker")
            data += chunk
        return data

    def _read_length(self) -> int:
        n = 0
        shift = 0
        while True:
            b = self._recv_exact(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
            if shift > 21:
                raise MQTTException("bad remaining length")

    def _send_packet(self, first: int, body: bytes) -> None:
        self._sock().sendall(bytes([first]) + encode_remaining_length(len(body)) + body)

    def _next_pid(self) -> int:
        self.pid = self.pid % 65535 + 1
        return self.pid

    # ---- public interface (as umqtt.simple) -----------------------------

    def set_callback(self, f: Callback) -> None:
        self.cb = f

    def set_last_will(self, topic: str | bytes, msg: str | bytes, retain: bool = False, qos: int = 0) -> None:
        if not 0 <= qos <= 2 or not topic:
            raise ValueError("bad last will")
        self.lw = (_as_bytes(topic), _as_bytes(msg), retain, qos)

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> bool:
        addr = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = socket.socket(socket.AF_INET6 if len(addr) == 4 else socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout or self.timeout)
        try:
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        flags = 0x02 if clean_session else 0
        payload = _field(self.client_id)
        if self.lw is not None:
            topic, msg, retain, qos = self.lw
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _field(topic) + _field(msg)
        if self.user is not None:
            flags |= 0x80
            payload += _field(self.user)
            if self.pswd is not None:
                flags |= 0x40
                payload += _field(self.pswd)
        header = _field(b"MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive)
        try:
            self._send_packet(CONNECT, header + payload)
            resp = self._recv_exact(4)
        except OSError:
            self._close_sock()
            raise
        if resp[0] != CONNACK or resp[1] != 2:
            self._close_sock()
            raise MQTTException("unexpected reply to CONNECT")
        if resp[3] != 0:
            self._close_sock()
            raise MQTTException(resp[3])
        return bool(resp[2] & 1)

    def _close_sock(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def disconnect(self) -> None:
        try:
            self._sock().sendall(bytes([DISCONNECT, 0]))
        finally:
            self._close_sock()

    def ping(self) -> None:
        self._sock().sendall(bytes([PINGREQ, 0]))

    def publish(self, topic: str | bytes, msg: str | bytes, retain: bool = False, qos: int = 0) -> None:
        if qos == 2:
            raise AssertionError("QoS 2 is not supported")
        topic_b = _as_bytes(topic)
        body = _field(topic_b)
        pid = 0
        if qos == 1:
            pid = self._next_pid()
            body += struct.pack("!H", pid)
        body += _as_bytes(msg)
        self._send_packet(PUBLISH | (qos << 1) | (1 if retain else 0), body)
        if qos == 1:
            while True:
                op = self.wait_msg()
                if op == PUBACK and self._last_ack == pid:
                    return

    def subscribe(self, topic: str | bytes, qos: int = 0) -> None:
        pid = self._next_pid()
        body = struct.pack("!H", pid) + _field(_as_bytes(topic)) + bytes([qos])
        self._send_packet(SUBSCRIBE, body)
        while True:
            op = self.wait_msg()
            if op == SUBACK and self._last_ack == pid:
                if self._last_suback == 0x80:
                    raise MQTTException(0x80)
                return

    _last_ack = 0
    _last_suback = 0

    def wait_msg(self) -> int | None:
        """Read one packet and handle it; returns its type (upper nibble) or None."""
        sock = self._sock()
        first_b = sock.recv(1)
        if first_b == b"":
            raise OSError("connection closed by broker")
        first = first_b[0]
        length = self._read_length()
        body = self._recv_exact(length) if length else b""
        op = first & 0xF0
        if op == PINGRESP:
            return PINGRESP
        if op == PUBACK:
            self._last_ack = struct.unpack("!H", body[:2])[0]
            return PUBACK
        if op == SUBACK:
            self._last_ack = struct.unpack("!H", body[:2])[0]
            self._last_suback = body[2] if len(body) > 2 else 0
            return SUBACK
        if op == PUBLISH:
            tlen = struct.unpack("!H", body[:2])[0]
            topic = body[2 : 2 + tlen]
            pos = 2 + tlen
            qos = (first >> 1) & 3
            if qos:
                pid = struct.unpack("!H", body[pos : pos + 2])[0]
                pos += 2
            if self.cb is not None:
                self.cb(topic, body[pos:])
            if qos == 1:
                self._sock().sendall(bytes([PUBACK, 2]) + struct.pack("!H", pid))
            elif qos == 2:
                raise AssertionError("QoS 2 is not supported")
            return PUBLISH
        return op

    def check_msg(self, attempts: int = 2) -> int | None:
        """Handle pending packets without blocking (as umqtt.simple)."""
        sock = self._sock()
        result = None
        for _ in range(attempts):
            sock.setblocking(False)
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                first = None
            finally:
                sock.settimeout(self.timeout)
            if first is None:
                return result
            if first == b"":
                raise OSError("connection closed by broker")
            result = self.wait_msg()
        return result
