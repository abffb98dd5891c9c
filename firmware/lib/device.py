"""What every citysense device does around its sensors: readings, store-and-forward, status, config.

Every reading is kept in the flash queue until the gateway's receipt covers it,
so neither a broker crash nor a gateway that lost a batch loses a reading:

- `record(m, ev)` stamps a reading with `seq` and `ts` and pushes it to the
  flash queue first. When the broker is reachable and nothing older is unsent,
  it is also published at once as a plain v1 message.
- A RAM-only "sent up to" write id (`sent_wid`) splits the pending records into
  sent-but-unconfirmed and unsent. `flush()` (from `service()`) publishes the
  unsent ones oldest first as `batch` messages.
- The gateway publishes `{"seq": N}` on `citysense/v1/{kind}/{id}/receipt`
  (retained, QoS 1) after it committed our readings; the receipt acknowledges
  (`FlashQueue.ack_while`) every pending record whose seq is <= N, read from
  the slot's leading `{"seq":N` without parsing the JSON. A receipt that is not
  JSON, has no non-negative integer `seq`, names another `id`, or covers a seq
  this device never issued is logged (`receipt_refused`) and ignored.
- On every new MQTT connection, and when no receipt has advanced for
  `receipt_timeout_s` while records are unconfirmed, `sent_wid` rewinds to the
  last confirmed record, so everything unconfirmed is resent, oldest first, as
  `batch` messages (the gateway flags them REPLAYED and its unique key stores
  each once), together with what was still unsent. Readings made after that
  are held back (kept in flash, unsent) until a receipt covers everything that
  was pending at the rewind (`resend_until`): a receipt names only the highest
  seq stored, so a newer reading that got through while the resend was dropped
  (a broker that came back before the gateway's subscription did) would
  otherwise confirm the dropped ones. While a device stays connected, the
  broker keeps what the gateway's persistent session has not received, so
  readings sent on one connection reach the gateway in order. While no receipt comes the timeout doubles
  after each resend, up to RESEND_BACKOFF_MAX times the configured one, so a
  gateway that is down for hours is not flooded with resends.
- After a reboot `sent_wid` starts at the last confirmed record: whatever the
  last boot left in flash is resent first, as after a rewind.

`service()` also keeps the MQTT session alive, applies retained config
messages, publishes the retained status every `status_every_s` (with `queued`:
records kept in flash, `unconfirmed`: those of them already sent), and feeds
the watchdog. Payloads follow citysense payload v1 (docs: /work/shared/ARCHITECTURE.md).
RAM: a few strings per message and six ints for the receipt state; batches are
built from queue slots (<= 2 KB).
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
RESEND_BACKOFF_MAX = 16  # the receipt timeout doubles after each fruitless resend, up to this factor
SEQ_PREFIX = b'{"seq":'


def leading_seq(payload: "memoryview | bytes") -> int:
    """The n of a record that starts with `{"seq":n`, or -1 when it does not (no allocation).

    Every record `Device.item` writes starts that way; a record whose seq cannot
    be read counts as covered by any receipt, since keeping it would block the
    queue behind a record no receipt can ever name.
    """
    size = len(payload)
    n = len(SEQ_PREFIX)
    if size <= n:
        return -1
    for i in range(n):
        if payload[i] != SEQ_PREFIX[i]:
            return -1
    value = -1
    i = n
    while i < size and 48 <= payload[i] <= 57:  # ASCII 0-9
        value = (0 if value < 0 else value * 10) + payload[i] - 48
        i += 1
    return value


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
        self.sent = 0  # records published, resends included
        # receipt state (RAM only; a reboot resends what was unconfirmed)
        self.sent_wid = queue.settled()  # records up to this write id were sent on this connection
        # write id of the newest record pending at the last rewind (or at boot: the last boot
        # may have sent them); newer ones wait for the receipt that covers it
        self.resend_until = queue.head - 1
        self.seen_connects = session.connects
        self.waiting_since: "Ticks | None" = None  # unconfirmed since, or since the last receipt that advanced
        self.resend_factor = 1
        self.confirmed_seq = -1  # highest seq a receipt confirmed since boot
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
        """Keep a reading in flash; publish it at once when connected and nothing older is unsent.

        Returns True when it was published now (it stays in flash until a receipt covers it).
        """
        item = self.item(m, ev)
        self._check_connection()
        try:
            wid = self.queue.push(item)
        except (OSError, ValueError) as exc:
            self.error("queue_push_failed", exc)
            # cannot be kept: send it once, without the receipt guarantee, rather than lose it
            return self.session.connected and self.session.publish(self.session.t_up, self._live(item))
        if not self.session.connected or self.sent_up_to() != wid - 1 or self.resending():
            return False
        if not self.session.publish(self.session.t_up, self._live(item)):
            return False
        self.sent += 1
        self._mark_sent(wid)
        return True

    def _live(self, item: str) -> str:
        return '{"v":1,"id":"' + self.id + '",' + item[1:]

    def sent_up_to(self) -> int:
        """Write id of the newest record sent and not yet confirmed (or the last confirmed one)."""
        settled = self.queue.settled()
        return self.sent_wid if self.sent_wid > settled else settled

    def resending(self) -> bool:
        """True while resent records wait for their receipt (newer readings are held back)."""
        return self.queue.settled() < self.resend_until

    def unconfirmed(self) -> int:
        """Records sent whose receipt has not come yet."""
        return self.sent_up_to() - self.queue.settled()

    def _mark_sent(self, wid: int) -> None:
        if self.unconfirmed() == 0:
            self.waiting_since = ticks_ms()
        if wid > self.sent_wid:
            self.sent_wid = wid

    def _rewind(self, reason: str) -> None:
        """Forget what was sent but not confirmed: flush() sends it again, oldest first."""
        waiting = self.unconfirmed()
        if waiting:
            log("resend", reason=reason, records=waiting)
        self.resend_until = self.queue.head - 1
        self.sent_wid = self.queue.settled()
        self.waiting_since = None

    def _check_connection(self) -> None:
        """A new MQTT connection: what the old one carried may be lost with the broker, resend it."""
        if self.session.connects != self.seen_connects:
            self.seen_connects = self.session.connects
            self._rewind("reconnect")

    def _receipt_overdue(self) -> bool:
        since = self.waiting_since
        if since is None or self.unconfirmed() == 0:
            return False
        limit: int = self.cfg["receipt_timeout_s"] * 1000 * self.resend_factor
        return ticks_diff(ticks_ms(), since) >= limit

    def flush(self) -> None:
        """Resend what a receipt should have covered by now, then send up to a few batches of unsent records."""
        if self._receipt_overdue():
            self._rewind("receipt_timeout")
            if self.resend_factor < RESEND_BACKOFF_MAX:
                self.resend_factor *= 2
        for _ in range(MAX_BATCHES_PER_SERVICE):
            if not self.session.connected:
                return
            start = self.sent_up_to()
            until = self.resend_until if self.resending() else 0
            if start >= self.queue.head - 1 or (until and start >= until):
                return  # nothing unsent, or the rest waits for the resend's receipt
            try:
                last, items = self.queue.peek(after=start, until=until)
            except OSError as exc:
                self.error("queue_read_failed", exc)
                return
            if items:
                msg = '{"v":1,"id":"' + self.id + '","batch":[' + ",".join([i.decode() for i in items]) + "]}"
                if not self.session.publish(self.session.t_up, msg):
                    return
                self.sent += len(items)
                log("batch_sent", items=len(items), unsent=self.queue.head - 1 - last)
            self._mark_sent(last)  # corrupt slots are passed over too
            self.watchdog.feed()

    def _on_receipt(self, msg: bytes) -> None:
        """Acknowledge every kept record the gateway's receipt `{"seq": N}` covers."""
        try:
            doc = json.loads(msg)
        except ValueError:
            self._refuse_receipt("not JSON")
            return
        if not isinstance(doc, dict):
            self._refuse_receipt("not a JSON object")
            return
        top = doc.get("seq")
        if not isinstance(top, int) or isinstance(top, bool) or top < 0:
            self._refuse_receipt("needs a non-negative integer 'seq'")
            return
        other = doc.get("id")
        if other is not None and other != self.id:
            self._refuse_receipt("for another device")
            return
        if top >= self.seq.next:
            self._refuse_receipt("covers seq %d, this device has issued only up to %d" % (top, self.seq.next - 1))
            return
        done = self.queue.ack_while(lambda payload: leading_seq(payload) <= top)
        if top > self.confirmed_seq:
            self.confirmed_seq = top
        if done:
            self.resend_factor = 1
            self.waiting_since = ticks_ms() if self.unconfirmed() else None
            log("receipt", seq=top, confirmed=done, unconfirmed=self.unconfirmed(), queued=len(self.queue))

    def _refuse_receipt(self, reason: str) -> None:
        self.errors += 1
        log("receipt_refused", reason=reason)

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
            "unconfirmed": self.unconfirmed(),
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
        if topic == self.session.t_receipt:
            self._on_receipt(msg)
            return
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
        self._check_connection()
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
