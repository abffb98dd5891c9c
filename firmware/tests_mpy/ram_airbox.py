"""MicroPython side of run.mjs: measure the air-box application's heap with fake hardware.

Builds the real AirBox, Device, Session, FlashQueue, SeqCounter and Config
with a fake UART (real PMS5003 frames), a fake SHT31 and a fake MQTT client,
runs reading cycles online and offline (queue + batch replay, the fake client
playing the gateway: a receipt for the highest seq of each reading message)
and keeps the live objects in the global KEEP. run.mjs then reports gc.mem_alloc() after
gc.collect() in a separate top-level call: the WebAssembly port only reclaims
garbage between top-level calls (its conservative scan sees stale pointers).
"""

import log

log.sink = lambda line: None

from airbox.app import AirBox
from clock import Clock
from config import Config
from device import Device
from drivers import pms5003, sht31
from flashqueue import FlashQueue
from sensorconfig import build_sensors
from seq import SeqCounter
from session import Session


class FakeClient:
    online = True
    published = 0

    def __init__(self, *args, **kwargs):
        self.receipt = None

    def set_callback(self, cb):
        self.cb = cb

    def set_last_will(self, *args, **kwargs):
        pass

    def connect(self):
        if not FakeClient.online:
            raise OSError(113)

    def subscribe(self, topic, qos=0):
        pass

    def check_msg(self):
        if self.receipt is not None:
            msg, self.receipt = self.receipt, None
            self.cb(b"citysense/v1/airbox/ram-01/receipt", msg)

    def ping(self):
        pass

    def publish(self, topic, msg, retain=False, qos=0):
        if not FakeClient.online:
            raise OSError(104)
        FakeClient.published += 1
        if topic.endswith("/up"):
            at = msg.rfind(b'"seq":') + 6
            end = at
            while msg[end] in b"0123456789":
                end += 1
            self.receipt = b'{"seq":' + msg[at:end] + b"}"

    def disconnect(self):
        pass


class FakeUart:
    def __init__(self):
        self.rx = b""

    def write(self, data):
        if data[2] == pms5003.CMD_READ:
            self.rx = b"\x00\x42" + pms5003.build_frame((8, 12, 17))
        return len(data)

    def any(self):
        return len(self.rx)

    def read(self):
        data, self.rx = self.rx, b""
        return data


class FakeI2C:
    def writeto(self, addr, data):
        pass

    def readfrom_into(self, addr, buf):
        buf[:] = sht31.encode_measurement(24.6, 71.2)


class Buses:
    """What main.py's BoardBuses gives the sensor builders, with the fakes above."""

    def i2c(self):
        return FakeI2C()

    def uart(self):
        return FakeUart()

    def set_pin(self):
        return None


class Watchdog:
    def feed(self):
        pass


def cycle(app, device, n):
    start = app.cycles
    while app.cycles < start + n:
        device.service()
        app.tick()


def main():
    import os

    try:
        os.mkdir("/ram")
    except OSError:
        pass
    cfg = Config("/ram/config.json")
    cfg.update({"id": "ram-01", "wifi_ssid": "x", "mqtt_host": "broker", "settle_s": 0, "interval_s": 1})
    session = Session(FakeClient, "ram-01", "airbox", "broker")
    device = Device(cfg, session, FlashQueue("/ram/queue.bin"), SeqCounter("/ram/seq.txt"), Clock(), Watchdog())
    noop = lambda ms: None  # noqa: E731
    pm, sensors = build_sensors(cfg, Buses(), noop, device.error)  # as main.py builds them
    app = AirBox(device, cfg, pm, sensors, frame_gap_ms=0, interval_ms=0)
    cycle(app, device, 5)  # online
    FakeClient.online = False
    session.drop("test")
    cycle(app, device, 30)  # offline: into the flash queue
    queued = len(device.queue)
    FakeClient.online = True
    session.last_try_ms = None
    for _ in range(20):
        device.service()  # replay as batches
    print("RAM airbox run published=%d queued_offline=%d left=%d" % (FakeClient.published, queued, len(device.queue)))
    return (cfg, session, device, app)


KEEP = main()
