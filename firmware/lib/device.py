"""What every citysense device does around its sensors: readings, store-and-forward, status, config.

`record(m, ev)` stamps a reading with `seq` and `ts`, sends it at once when the
broker is reachable and nothing older is waiting, and otherwise appends it to
the flash queue, which `service()` replays oldest first as `batch` messages.
`service()` also keeps the MQTT session alive, applies retained config
messages, publishes the retained status every `status_every_s`, and feeds the
watchdog. Payloads follow citysense payload v1 (docs: /work/shared/ARCHITECTURE.md).
RAM: a few strings per message; batches are built from queue slots (<= 2 KB).
"""

import gc
import json

from clock import ticks_diff, ticks_ms
from log import log

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Callable

    from clock import Clock
    from config import Config
    from flashqueue import FlashQueue
    from fwtypes import Application, SleepMs, Ticks
    from seq import SeqCounter
    from session import Session
    from watchdog import Watchdog

FW_VERSION = "0.1.0"


def dumps(obj: object) -> str:
    """Compact JSON on both runtimes (CPython adds spaces by default)."""
    try:
        return json.dumps(obj, separators=(",", ":"))
    except TypeError:
        return json.dumps(obj)


def mem_free() -> int:
    fn = getattr(gc, "mem_free", None)  # MicroPython only; 0 on the host
    return int(fn()) if fn is not None else 0

MAX_BATCHES_PER_SERVICE = 4


class Device:
    def __init__(
        self,
        cfg: "Config",
        session: "Session",
        queue: "FlashQueue",
        seq: "SeqCounter",
        clock: "Clock",
        watchdog: "Watchdog",
        reset: str = "unknown",
        net_info: "Callable[[], tuple[str, int | None]] | None" = None,
        on_config: "Callable[[], None] | None" = None,
    ) -> None:
        self.cfg = cfg
        self.session = session
        self.queue = queue
        self.seq = seq
        self.clock = clock
        self.watchdog = watchdog
        self.reset = reset
        self.net_info = net_info
        self.on_config = on_config
        self.id: str = cfg["id"]
        self.errors = 0
        self.cfg_error = ""
        self.started_ms = ticks_ms()
        self.last_status_ms: "Ticks | None" = None
        self.status_now = True
        self.want_setup = ""
        self.sent = 0
        self.status_fields: "Callable[[], dict[str, object]] | None" = None  # the application's own status keys
        session.on_message = self._on_message

    # ---- readings --------------------------------------------------------

    def item(self, m: "dict[str, int | float]", ev: "str | None" = None) -> str:
        """The JSON text of one reading without `v` and `id` (a batch item)."""
        text = '{"seq":%d,"ts":%d,"m":%s' % (self.seq.take(), self.clock.unix(), dumps(m))
        if ev:
            text += ',"ev":"' + ev + '"'
        return text + "}"

    def record(self, m: "dict[str, int | float]", ev: "str | None" = None) -> bool:
        item = self.item(m, ev)
        if self.session.connected and len(self.queue) == 0:
            if self.session.publish(self.session.t_up, '{"v":1,"id":"' + self.id + '",' + item[1:]):
                self.sent += 1
                return True
        try:
            self.queue.push(item)
        except (OSError, ValueError) as exc:
            self.error("queue_push_failed", exc)
        return False

    def flush(self) -> None:
        """Send up to a few batches of queued readings, oldest first."""
        for _ in range(MAX_BATCHES_PER_SERVICE):
            if not self.session.connected or len(self.queue) == 0:
                return
            try:
                last, items = self.queue.peek()
            except OSError as exc:
                self.error("queue_read_failed", exc)
                return
            if items:
                msg = '{"v":1,"id":"' + self.id + '","batch":[' + ",".join([i.decode() for i in items]) + "]}"
                if not self.session.publish(self.session.t_up, msg):
                    return
                self.sent += len(items)
                log("batch_sent", items=len(items), left=len(self.queue) - len(items))
            self.queue.ack(last)
            self.watchdog.feed()

    def error(self, event: str, exc: BaseException) -> None:
        self.errors += 1
        log(event, reason=repr(exc))

    # ---- status and config ----------------------------------------------

    def status(self) -> str:
        gc.collect()
        ip: str = ""
        rssi: "int | None" = None
        if self.net_info is not None:
            try:
                ip, rssi = self.net_info()
            except Exception:  # noqa: BLE001
                pass
        doc: "dict[str, object]" = {
            "online": True,
            "fw": FW_VERSION,
            "ip": ip,
            "rssi": rssi,
            "heap": mem_free(),
            "queued": len(self.queue),
            "dropped": self.queue.dropped,
            "cfg": self.cfg["version"],
            "reset": self.reset,
            "uptime": ticks_diff(ticks_ms(), self.started_ms) // 1000,
            "errors": self.errors,
            "synced": 1 if self.clock.unix() else 0,
        }
        if self.cfg_error:
            doc["cfg_error"] = self.cfg_error
        if self.status_fields is not None:
            try:
                doc.update(self.status_fields())
            except Exception as exc:  # noqa: BLE001 - the status must go out even if the app's part fails
                self.error("status_fields_failed", exc)
        return dumps(doc)

    def _on_message(self, topic: "str | bytes", msg: bytes) -> None:
        if isinstance(topic, bytes):
            topic = topic.decode()
        if topic != self.session.t_config:
            return
        try:
            changed = self.cfg.apply_remote(msg)
        except ValueError as exc:  # ConfigError is a ValueError
            self.cfg_error = str(exc)[:120]
            log("config_refused", reason=self.cfg_error)
            self.status_now = True
            return
        if changed:
            self.cfg_error = ""
            log("config_applied", version=self.cfg["version"])
            if self.on_config is not None:
                self.on_config()
            self.status_now = True

    # ---- the loop's housekeeping -----------------------------------------

    def service(self) -> None:
        """Call often (every loop turn): network, queue replay, status, watchdog."""
        self.watchdog.feed()
        was = self.session.connected
        self.session.poll()
        if self.session.connected and not was:
            self.status_now = True
        if self.session.auth_failures >= self.cfg["auth_max_failures"] and not self.want_setup:
            self.want_setup = "broker refused the credentials %d times" % self.session.auth_failures
            log("setup_mode_wanted", reason=self.want_setup)
        if not self.session.connected:
            return
        if self.clock.due_for_sync():
            self.clock.sync()
        self.flush()
        now = ticks_ms()
        every = self.cfg["status_every_s"] * 1000
        if self.status_now or self.last_status_ms is None or ticks_diff(now, self.last_status_ms) >= every:
            if self.session.publish(self.session.t_status, self.status(), True):
                self.status_now = False
                self.last_status_ms = now
        self.watchdog.feed()

    def shutdown(self) -> None:
        self.session.close('{"online":false}')


def run_loop(
    device: Device,
    app: "Application",
    sleep_ms: "SleepMs",
    should_stop: "Callable[[], bool] | None" = None,
    max_cycles: "int | None" = None,
) -> None:
    """The main loop: service the device, advance the app, sleep briefly; never raises."""
    while True:
        if should_stop is not None and should_stop():
            return
        if max_cycles is not None and app.cycles >= max_cycles:
            return
        try:
            device.service()
        except Exception as exc:  # noqa: BLE001 - keep looping, the watchdog guards hangs
            device.error("service_error", exc)
        try:
            wait = app.tick()
        except Exception as exc:  # noqa: BLE001
            device.error("app_error", exc)
            wait = 1000
        sleep_ms(max(0, min(wait, 1000)))
