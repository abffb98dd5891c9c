"""The device's MQTT session over umqtt.simple: credentials, last will, QoS 1, backoff.

umqtt.simple is installed on the device with `mip install umqtt.simple` (see
README); on the host the runner puts its own compatible client on sys.path.
The client class is a constructor argument so tests can pass a fake.

- Connects with username = device id (unless configured), the device token as
  password, a retained last will `{"online":false}` on the status topic, and
  subscribes (QoS 1) to the retained config topic and to its own receipt topic
  (`t_receipt`: the gateway's `{"seq": N}` after it committed our readings).
  Messages on both arrive through `on_message`, also while `publish()` waits
  for a PUBACK (umqtt.simple reads incoming packets there).
- `connects` counts successful connections, so the caller can tell a new
  connection (and resend what the last one left unconfirmed) from the old one.
- Reconnects with exponential backoff (1 s doubling to 5 min). Never raises
  from `poll()` or `publish()`; failures are logged with their reason.
- `topics` replaces the subscriptions and `will=False` leaves out the last will, for a device
  that only listens (the school flag display subscribes to its school's flag topic alone).
- A broker refusing the credentials (CONNACK 4 or 5) is counted in
  `auth_failures`; the application decides when to enter setup mode.
RAM: the umqtt client (~1 KB) plus topic strings.
"""

from clock import ticks_diff, ticks_ms
from log import log

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable

    from fwtypes import MQTTClient, MQTTClientClass, Ticks

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 300000


def topic_base(kind: str, device_id: str) -> str:
    return "citysense/v1/" + kind + "/" + device_id + "/"


class Session:
    def __init__(
        self,
        client_class: "MQTTClientClass",
        device_id: str,
        kind: str,
        host: str,
        port: int = 1883,
        user: str = "",
        password: str = "",
        keepalive: int = 60,
        on_message: "Callable[[str | bytes, bytes], None] | None" = None,
        topics: "tuple[str, ...] | None" = None,
        will: bool = True,
    ) -> None:
        self.client_class = client_class
        self.device_id = device_id
        self.host = host
        self.port = port
        self.user = user or device_id
        self.password = password
        self.keepalive = keepalive
        self.on_message = on_message
        base = topic_base(kind, device_id)
        self.t_up = base + "up"
        self.t_status = base + "status"
        self.t_config = base + "config"
        self.t_receipt = base + "receipt"
        self.topics = topics if topics is not None else (self.t_config, self.t_receipt)
        self.will = will
        self.client: "MQTTClient | None" = None
        self.connected = False
        self.auth_failures = 0
        self.failures = 0
        self.connects = 0
        self.backoff_ms = 0
        self.last_try_ms: "Ticks | None" = None
        self.last_io_ms = ticks_ms()
        self.last_error = ""

    def _callback(self, topic: bytes, msg: bytes) -> None:
        if self.on_message is not None:
            try:
                self.on_message(topic, msg)
            except Exception as exc:  # noqa: BLE001 - a bad message must not kill the session
                log("message_handler_failed", reason=repr(exc))

    def connect(self) -> bool:
        """One connection attempt; returns True when connected."""
        self.last_try_ms = ticks_ms()
        client = self.client_class(
            self.device_id, self.host, port=self.port, user=self.user, password=self.password, keepalive=self.keepalive
        )
        client.set_callback(self._callback)
        if self.will:
            client.set_last_will(self.t_status, b'{"online":false}', retain=True, qos=1)
        try:
            client.connect()
            for topic in self.topics:
                client.subscribe(topic, qos=1)
        except Exception as exc:  # noqa: BLE001 - OSError or MQTTException
            self._close(client)
            self._failed(exc)
            return False
        self.client = client
        self.connected = True
        self.connects += 1
        self.failures = 0
        self.auth_failures = 0
        self.backoff_ms = 0
        self.last_io_ms = ticks_ms()
        log("mqtt_connected", host=self.host, port=self.port)
        return True

    def _failed(self, exc: Exception) -> None:
        code = exc.args[0] if exc.args else None
        if type(exc).__name__ == "MQTTException" and code in CONNACK_REASONS:
            reason = CONNACK_REASONS[code]
            if code in (4, 5):
                self.auth_failures += 1
        else:
            reason = repr(exc)
        self.failures += 1
        self.last_error = reason
        if self.backoff_ms:
            self.backoff_ms = min(self.backoff_ms * 2, BACKOFF_MAX_MS)
        else:
            self.backoff_ms = BACKOFF_MIN_MS
        log("mqtt_connect_failed", reason=reason, retry_ms=self.backoff_ms, failures=self.failures)

    def _close(self, client: "MQTTClient") -> None:
        try:
            sock = client.sock
            if sock is not None:
                sock.close()
        except Exception:  # noqa: BLE001
            pass

    def drop(self, reason: str) -> None:
        """Forget a broken connection; the next poll() reconnects after backoff."""
        if self.client is not None:
            self._close(self.client)
        self.client = None
        if self.connected:
            log("mqtt_lost", reason=reason)
        self.connected = False
        self.last_error = reason
        self.backoff_ms = self.backoff_ms or BACKOFF_MIN_MS
        self.last_try_ms = ticks_ms()

    def due(self) -> bool:
        if self.last_try_ms is None:
            return True
        return ticks_diff(ticks_ms(), self.last_try_ms) >= self.backoff_ms

    def poll(self) -> bool:
        """Reconnect when due, read pending messages, keep the connection alive."""
        client = self.client
        if not self.connected or client is None:
            if self.due():
                self.connect()
            return self.connected
        try:
            client.check_msg()
            if self.keepalive and ticks_diff(ticks_ms(), self.last_io_ms) >= self.keepalive * 500:
                client.ping()
                self.last_io_ms = ticks_ms()
        except Exception as exc:  # noqa: BLE001
            self.drop(repr(exc))
        return self.connected

    def publish(self, topic: str, payload: "str | bytes", retain: bool = False) -> bool:
        """Publish with QoS 1 (waits for PUBACK). Returns True on success."""
        client = self.client
        if not self.connected or client is None:
            return False
        if isinstance(payload, str):
            payload = payload.encode()  # umqtt.simple sends len(msg) bytes: must be bytes
        try:
            client.publish(topic, payload, retain, 1)
        except Exception as exc:  # noqa: BLE001
            self.drop(repr(exc))
            return False
        self.last_io_ms = ticks_ms()
        return True

    def close(self, status_payload: "str | None" = None) -> None:
        if self.connected and status_payload is not None:
            self.publish(self.t_status, status_payload, True)
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self.client = None
        self.connected = False
