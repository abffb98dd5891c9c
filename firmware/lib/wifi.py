"""WiFi station with backoff, and setup mode: an access point with a tiny HTTP form.

`Station.ensure()` is called from the main loop; it (re)connects with
exponential backoff (2 s doubling to 2 min) and counts failures. The caller
enters setup mode when no network is configured, or after `wifi_max_failures`
failures, or when the broker keeps refusing the credentials.

Setup mode (`SetupPortal`) opens the AP "citysense-<id tail>", serves one form
on port 80 (WiFi SSID and password, device id, broker host/port, device token)
and saves the answers into the config file; the caller then resets the board.
Form parsing is pure (`parse_form`). RAM: one 1 KB request buffer.
"""

from clock import sleep_ms, ticks_diff, ticks_ms
from log import log

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable

    from config import Config
    from fwtypes import NetworkModule, SocketModule, StreamSocket, Ticks, WLANInterface

BACKOFF_MIN_MS = 2000
BACKOFF_MAX_MS = 120000
CONNECT_WAIT_MS = 6000
FORM_FIELDS = ("wifi_ssid", "wifi_password", "id", "mqtt_host", "mqtt_port", "mqtt_password")


class Station:
    def __init__(
        self, network: "NetworkModule", ssid: str, password: str, feed: "Callable[[], None] | None" = None
    ) -> None:
        self.network = network
        self.ssid = ssid
        self.password = password
        self.feed = feed
        self.wlan = network.WLAN(network.STA_IF)
        self.failures = 0
        self.backoff_ms = 0
        self.last_try_ms: "Ticks | None" = None

    def isconnected(self) -> bool:
        try:
            return self.wlan.isconnected()
        except Exception:  # noqa: BLE001
            return False

    def info(self) -> "tuple[str, int | None]":
        """(ip, rssi) for the status message."""
        ip = self.wlan.ifconfig()[0]
        try:
            rssi: "int | None" = self.wlan.status("rssi")
        except Exception:  # noqa: BLE001
            rssi = None
        return ip, rssi

    def ensure(self) -> bool:
        """Return True when connected; otherwise try again when the backoff allows."""
        if self.isconnected():
            self.failures = 0
            self.backoff_ms = 0
            return True
        now = ticks_ms()
        if self.last_try_ms is not None and ticks_diff(now, self.last_try_ms) < self.backoff_ms:
            return False
        self.last_try_ms = now
        try:
            self.wlan.active(True)
            self.wlan.connect(self.ssid, self.password)
            waited = 0
            while waited < CONNECT_WAIT_MS and not self.wlan.isconnected():
                if self.feed is not None:
                    self.feed()
                sleep_ms(200)
                waited += 200
        except Exception as exc:  # noqa: BLE001
            log("wifi_error", reason=repr(exc))
        if self.isconnected():
            log("wifi_connected", ip=self.wlan.ifconfig()[0])
            self.failures = 0
            self.backoff_ms = 0
            return True
        self.failures += 1
        self.backoff_ms = min(max(self.backoff_ms * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS)
        log("wifi_connect_failed", ssid=self.ssid, failures=self.failures, retry_ms=self.backoff_ms)
        return False


def url_decode(text: str) -> str:
    """Decode application/x-www-form-urlencoded text (+ and %XX, UTF-8)."""
    out = bytearray()
    raw = text.replace("+", " ").encode()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25 and i + 2 < len(raw):  # "%"
            try:
                out.append(int(raw[i + 1 : i + 3].decode(), 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(c)
        i += 1
    return str(out, "utf-8")


def parse_form(body: "bytes | str") -> "dict[str, object]":
    """Return {field: value} for the setup form's known fields (bytes or str body)."""
    if isinstance(body, bytes):
        body = body.decode()
    fields: "dict[str, object]" = {}
    for pair in body.split("&"):
        if "=" not in pair:
            continue
        key, value = pair.split("=", 1)
        key = url_decode(key)
        if key in FORM_FIELDS:
            fields[key] = url_decode(value).strip()
    if "mqtt_port" in fields:
        try:
            fields["mqtt_port"] = int(str(fields["mqtt_port"]) or "1883")
        except ValueError:
            fields["mqtt_port"] = -1  # refused by config validation with a clear message
    return fields


PAGE = (
    "<!doctype html><html><head><meta name=viewport content='width=device-width'>"
    "<title>citysense setup</title></head><body><h1>citysense setup</h1>%s"
    "<form method=post>"
    "<p>WiFi name <input name=wifi_ssid value='%s'></p>"
    "<p>WiFi password <input name=wifi_password type=password></p>"
    "<p>Device id <input name=id value='%s'></p>"
    "<p>Broker host <input name=mqtt_host value='%s'> port <input name=mqtt_port value='%d'></p>"
    "<p>Device token <input name=mqtt_password type=password></p>"
    "<p><button>Save and restart</button></p></form></body></html>"
)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&#39;")


class SetupPortal:
    """Serve the setup form until valid answers are saved. `socket` is the socket module."""

    def __init__(self, cfg: "Config", socket: "SocketModule", reason: str = "") -> None:
        self.cfg = cfg
        self.socket = socket
        self.reason = reason
        self.done = False

    def open_access_point(self, network: "NetworkModule", password: str = "citysense") -> "WLANInterface":
        ap = network.WLAN(network.AP_IF)
        ap.active(True)
        name = "citysense-" + (self.cfg["id"][-6:] or "new")
        try:
            ap.config(essid=name, password=password)
        except Exception:  # noqa: BLE001 - some ports take other keywords
            ap.config(ssid=name, key=password)
        log("setup_mode", ap=name, reason=self.reason)
        return ap

    def page(self, message: str) -> str:
        c = self.cfg
        note = "<p><b>%s</b></p>" % _escape(message) if message else ""
        return PAGE % (note, _escape(c["wifi_ssid"]), _escape(c["id"]), _escape(c["mqtt_host"]), c["mqtt_port"])

    def handle(self, request: bytes) -> "tuple[str, str]":
        """Return (status line, html) for one raw HTTP request; save the form on POST."""
        parts = request.split(b"\r\n\r\n", 1)
        head = parts[0]
        body = parts[1] if len(parts) > 1 else b""
        if head.startswith(b"POST"):
            fields = parse_form(body)
            if not fields.get("mqtt_password"):
                fields.pop("mqtt_password", None)  # keep the stored token
            if not fields.get("wifi_password"):
                fields.pop("wifi_password", None)
            try:
                self.cfg.update(fields)
            except ValueError as exc:
                return "400 Bad Request", self.page("Not saved: " + str(exc))
            self.done = True
            log("setup_saved", id=self.cfg["id"])
            return "200 OK", self.page("Saved. The device restarts now.")
        return "200 OK", self.page(self.reason)

    def serve(
        self,
        port: int = 80,
        stop: "Callable[[], bool] | None" = None,
        feed: "Callable[[], None] | None" = None,
        timeout_ms: "int | None" = None,
    ) -> bool:
        """Accept connections until the form was saved, `stop()` says so, or the timeout.

        The timeout lets a device whose router was only down for a while go back
        to trying it (the caller resets the board) instead of waiting here forever.
        """
        started = ticks_ms()
        s = self.socket.socket()
        s.setsockopt(self.socket.SOL_SOCKET, self.socket.SO_REUSEADDR, 1)
        s.bind(self.socket.getaddrinfo("0.0.0.0", port)[0][-1])
        s.listen(2)
        s.settimeout(1.0)
        self.port = s.getsockname()[1] if hasattr(s, "getsockname") else port
        try:
            while not self.done and not (stop is not None and stop()):
                if timeout_ms is not None and ticks_diff(ticks_ms(), started) >= timeout_ms:
                    log("setup_mode_timeout")
                    break
                if feed is not None:
                    feed()
                try:
                    conn, _ = s.accept()
                except OSError:
                    continue
                try:
                    conn.settimeout(3.0)
                    request = self._read_request(conn)
                    status, html = self.handle(request)
                    conn.send(("HTTP/1.0 %s\r\nContent-Type: text/html\r\n\r\n" % status).encode())
                    conn.send(html.encode())
                except Exception as exc:  # noqa: BLE001
                    log("setup_request_failed", reason=repr(exc))
                finally:
                    conn.close()
        finally:
            s.close()
        return self.done

    def _read_request(self, conn: "StreamSocket") -> bytes:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 2048:
            chunk = conn.recv(512)
            if not chunk:
                return data
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        want = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                want = int(line[15:].strip())
        body_len = len(data) - len(head) - 4
        while body_len < want and len(data) < 4096:
            chunk = conn.recv(512)
            if not chunk:
                break
            data += chunk
            body_len += len(chunk)
        return data
