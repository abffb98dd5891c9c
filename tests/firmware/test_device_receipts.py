"""End-to-end receipts on the device: every reading stays in flash until the gateway's receipt covers it.

Real Device, Session, FlashQueue, SeqCounter and Config with a fake MQTT client.
Written in the subset CPython and MicroPython share (firmware/tests_mpy runs it too).
"""

# ruff: noqa: UP031 - also runs under MicroPython (kept portable)

import json

import log
from clock import Clock, ticks_add, ticks_ms
from config import Config
from device import RESEND_BACKOFF_MAX, Device, leading_seq
from flashqueue import FlashQueue
from fwtest_support import Collector, tmp_dir
from seq import SeqCounter
from session import Session

RECEIPT = b"citysense/v1/airbox/box-01/receipt"


class FakeClient:
    """Stands in for umqtt.simple.MQTTClient: records publishes, delivers an inbox on check_msg.

    `during_publish` messages are delivered inside the next publish, as umqtt.simple
    does while it waits for the PUBACK.
    """

    online = True
    last = None

    def __init__(self, client_id, server, **kwargs):
        self.published = []
        self.subscribed = []
        self.inbox = []
        self.during_publish = []
        self.cb = None
        FakeClient.last = self

    def set_callback(self, cb):
        self.cb = cb

    def set_last_will(self, topic, msg, retain=False, qos=0):
        pass

    def connect(self):
        if not FakeClient.online:
            raise OSError(113)
        return False

    def subscribe(self, topic, qos=0):
        self.subscribed.append(topic)

    def check_msg(self):
        while self.inbox:
            topic, msg = self.inbox.pop(0)
            self.cb(topic, msg)

    def ping(self):
        pass

    def publish(self, topic, msg, retain=False, qos=0):
        if not FakeClient.online:
            raise OSError(104)
        self.published.append((topic, bytes(msg)))
        while self.during_publish:
            topic_in, msg_in = self.during_publish.pop(0)
            self.cb(topic_in, msg_in)

    def disconnect(self):
        pass


class Dog:
    def feed(self):
        pass


def _device(path=None, timeout=60, slots=64):
    FakeClient.online = True
    path = path or tmp_dir()
    cfg = Config(path + "/config.json")
    cfg.update({"id": "box-01", "wifi_ssid": "x", "mqtt_host": "h", "receipt_timeout_s": timeout})
    session = Session(FakeClient, "box-01", "airbox", "h")
    queue = FlashQueue(path + "/q.bin", slots)
    dev = Device(cfg, session, queue, SeqCounter(path + "/seq"), Clock(), Dog())
    return dev, path


def _reading(dev):
    return dev.record({"pm25": 12, "t": 24.5})


def _sent(client):
    """[("live", [seq]) or ("batch", [seq, ...])] in the order the device published them."""
    out = []
    for topic, payload in client.published:
        if not topic.endswith("/up"):
            continue
        doc = json.loads(payload)
        assert doc["v"] == 1 and doc["id"] == "box-01"
        if "batch" in doc:
            out.append(("batch", [item["seq"] for item in doc["batch"]]))
        else:
            out.append(("live", [doc["seq"]]))
    return out


def _receipt(dev, seq):
    FakeClient.last.inbox.append((RECEIPT, ('{"seq":%d}' % seq).encode()))
    dev.service()


def _age_wait(dev, ms):
    """Pretend the device has waited `ms` for a receipt."""
    dev.waiting_since = ticks_add(ticks_ms(), -ms)


def _reconnect(dev):
    dev.session.drop("test")
    dev.session.last_try_ms = None


def test_session_subscribes_to_its_own_receipt_topic_beside_config():
    dev, _ = _device()
    dev.service()
    assert FakeClient.last.subscribed == ["citysense/v1/airbox/box-01/config", "citysense/v1/airbox/box-01/receipt"]


def test_every_reading_stays_in_flash_until_a_receipt_covers_it():
    dev, _ = _device()
    dev.service()
    for _ in range(3):
        assert _reading(dev) is True
    assert _sent(FakeClient.last) == [("live", [0]), ("live", [1]), ("live", [2])]
    assert len(dev.queue) == 3 and dev.unconfirmed() == 3
    _receipt(dev, 2)
    assert len(dev.queue) == 0 and dev.unconfirmed() == 0


def test_a_receipt_for_a_lower_seq_than_sent_acks_only_the_records_it_covers():
    dev, _ = _device()
    dev.service()
    for _ in range(5):
        _reading(dev)
    _receipt(dev, 1)
    assert len(dev.queue) == 3 and dev.unconfirmed() == 3
    _last, items = dev.queue.peek()
    assert [json.loads(i)["seq"] for i in items] == [2, 3, 4]
    _receipt(dev, 0)  # an older receipt (a redelivery) changes nothing
    assert len(dev.queue) == 3
    _receipt(dev, 3)
    assert len(dev.queue) == 1 and dev.unconfirmed() == 1


def test_without_a_receipt_the_unconfirmed_are_resent_after_the_timeout_oldest_first_as_a_batch():
    dev, _ = _device(timeout=60)
    dev.service()
    for _ in range(3):
        _reading(dev)
    client = FakeClient.last
    _age_wait(dev, 59000)
    dev.service()
    assert _sent(client) == [("live", [0]), ("live", [1]), ("live", [2])]  # not yet
    _age_wait(dev, 60000)
    dev.service()
    assert _sent(client)[3:] == [("batch", [0, 1, 2])]
    assert len(dev.queue) == 3 and dev.unconfirmed() == 3


def test_the_resend_timeout_doubles_while_no_receipt_comes_and_resets_when_one_does():
    dev, _ = _device(timeout=10)
    dev.service()
    _reading(dev)
    client = FakeClient.last
    _age_wait(dev, 10000)
    dev.service()
    assert len(_sent(client)) == 2  # first resend after 10 s
    _age_wait(dev, 19000)
    dev.service()
    assert len(_sent(client)) == 2  # now waits 20 s
    _age_wait(dev, 20000)
    dev.service()
    assert len(_sent(client)) == 3
    for _ in range(8):
        _age_wait(dev, 10000 * RESEND_BACKOFF_MAX)
        dev.service()
    assert dev.resend_factor == RESEND_BACKOFF_MAX  # capped
    _reading(dev)  # seq 1, live
    _receipt(dev, 0)
    assert dev.resend_factor == 1 and len(dev.queue) == 1


def test_a_new_connection_resends_the_unconfirmed_before_newer_readings():
    dev, _ = _device()
    dev.service()
    _reading(dev)
    _reading(dev)
    _reconnect(dev)
    assert _reading(dev) is False  # offline: kept in flash only
    dev.service()  # reconnects
    client = FakeClient.last
    assert _sent(client) == [("batch", [0, 1, 2])]  # the unconfirmed, then the unsent, oldest first
    assert _reading(dev) is False  # held back until the resend is confirmed
    dev.service()
    assert len(_sent(client)) == 1
    _receipt(dev, 2)
    assert _sent(client)[1:] == [("batch", [3])]
    assert _reading(dev) is True
    assert _sent(client)[2:] == [("live", [4])]


def test_no_reading_is_sent_alone_while_a_lost_resend_waits_for_its_receipt():
    """A receipt names the highest seq stored: a newer reading stored alone would confirm the lost resend."""
    dev, _ = _device(timeout=10)
    dev.service()
    _reading(dev)
    _reconnect(dev)
    dev.service()  # resends seq 0; suppose the broker drops it (no gateway subscribed yet)
    client = FakeClient.last
    for _ in range(3):
        _reading(dev)
        dev.service()
    assert _sent(client) == [("batch", [0])]
    _age_wait(dev, 10000)
    dev.service()
    assert _sent(client) == [("batch", [0]), ("batch", [0, 1, 2, 3])]  # one message: stored whole or not at all
    _receipt(dev, 0)
    assert len(_sent(client)) == 2 and dev.resending()
    _receipt(dev, 3)
    assert len(dev.queue) == 0 and not dev.resending()
    assert _reading(dev) is True


def test_a_reading_made_right_after_a_reconnect_waits_behind_the_resend():
    dev, _ = _device()
    dev.service()
    _reading(dev)
    _reading(dev)
    _reconnect(dev)
    dev.session.poll()  # the session reconnects before the device's service() has run
    assert _reading(dev) is False
    dev.service()
    assert _sent(FakeClient.last) == [("batch", [0, 1])]
    _receipt(dev, 1)
    assert _sent(FakeClient.last)[1:] == [("batch", [2])]


def test_a_receipt_arriving_while_a_resend_is_published_is_applied():
    dev, _ = _device()
    dev.service()
    for _ in range(3):
        _reading(dev)
    _reconnect(dev)
    FakeClient.online = True
    dev.session.poll()
    client = FakeClient.last
    client.during_publish.append((RECEIPT, b'{"seq":2}'))
    dev.service()
    assert _sent(client) == [("batch", [0, 1, 2])]
    assert len(dev.queue) == 0 and dev.unconfirmed() == 0


def test_corrupt_or_foreign_receipts_are_ignored_and_logged():
    dev, _ = _device()
    dev.service()
    for _ in range(3):
        _reading(dev)
    seen = Collector()
    saved = log.sink
    log.sink = seen
    try:
        client = FakeClient.last
        bad = (
            b"not json", b"\xff\xfe", b"[1]", b'{"seq":"2"}', b'{"seq":-1}', b'{"seq":true}', b'{"seq":2.0}',
            b'{"ts":5}', b'{"seq":99}', b'{"seq":2,"id":"box-02"}',
        )
        for payload in bad:
            client.inbox.append((RECEIPT, payload))
        client.inbox.append((b"citysense/v1/airbox/box-02/receipt", b'{"seq":2}'))  # another device's topic
        dev.service()
    finally:
        log.sink = saved
    assert len(dev.queue) == 3 and dev.unconfirmed() == 3
    assert seen.events().count("receipt_refused") == len(bad)
    assert "message_handler_failed" not in seen.events()
    assert any("never" in line or "issued only up to 2" in line for line in seen.lines)
    _receipt(dev, 2)  # a good one still works afterwards
    assert len(dev.queue) == 0


def test_a_reboot_keeps_the_unconfirmed_records_and_resends_them_first():
    dev, path = _device()
    dev.service()
    for _ in range(3):
        _reading(dev)
    _receipt(dev, 0)
    dev2, _ = _device(path)  # power cut: a new boot on the same flash
    assert len(dev2.queue) == 2 and dev2.unconfirmed() == 0
    dev2.service()
    assert _reading(dev2) is False  # waits behind the last boot's readings
    assert _sent(FakeClient.last) == [("batch", [1, 2])]
    _receipt(dev2, 2)
    sent = _sent(FakeClient.last)
    assert sent[1][0] == "batch" and sent[1][1][0] >= 100  # seq resumes a block up
    _receipt(dev2, sent[1][1][0])
    assert len(dev2.queue) == 0


def test_status_reports_what_is_kept_and_what_is_unconfirmed():
    dev, _ = _device()
    dev.service()
    _reading(dev)
    _reading(dev)
    _reconnect(dev)
    FakeClient.online = False
    _reading(dev)
    doc = json.loads(dev.status())
    assert doc["queued"] == 3 and doc["unconfirmed"] == 2  # sent before the connection broke
    FakeClient.online = True
    dev.service()  # resends all three
    doc = json.loads(dev.status())
    assert doc["queued"] == 3 and doc["unconfirmed"] == 3
    _receipt(dev, 0)
    doc = json.loads(dev.status())
    assert doc["queued"] == 2 and doc["unconfirmed"] == 2


def test_a_full_queue_still_overwrites_the_oldest_and_counts_it():
    dev, _ = _device(slots=16)
    FakeClient.online = False
    for _ in range(20):
        _reading(dev)
    assert len(dev.queue) == 16 and dev.queue.dropped == 4
    FakeClient.online = True
    dev.service()
    seqs = []
    for _kind, batch in _sent(FakeClient.last):
        seqs += batch
    assert seqs == list(range(4, 20))
    _receipt(dev, 19)
    assert len(dev.queue) == 0


def test_leading_seq_reads_the_seq_without_parsing_json():
    assert leading_seq(b'{"seq":10233,"ts":1,"m":{}}') == 10233
    assert leading_seq(memoryview(b'{"seq":0}')) == 0
    assert leading_seq(b'{"ts":1,"seq":5}') == -1
    assert leading_seq(b'{"seq":}') == -1
    assert leading_seq(b'{"seq"') == -1
