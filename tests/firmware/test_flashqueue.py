"""The store-and-forward queue in flash (runs on CPython and MicroPython)."""

# ruff: noqa: UP031 - also runs under MicroPython (kept portable)

import json

import flashqueue
from fwtest_support import file_size, raises, tmp_dir, truncate


def _item(seq):
    return '{"seq":%d,"ts":1763785200,"m":{"pm1":8,"pm25":12,"pm10":17,"t":24.6,"rh":71.2}}' % seq


def _drain(q):
    out = []
    while len(q):
        last, items = q.peek(max_items=7)
        out += [json.loads(i)["seq"] for i in items]
        q.ack(last)
    return out


def test_queue_replays_oldest_first_in_batches():
    q = flashqueue.FlashQueue(tmp_dir() + "/q.bin", capacity=32)
    for i in range(20):
        q.push(_item(i))
    last, items = q.peek(max_items=5)
    assert [json.loads(i)["seq"] for i in items] == [0, 1, 2, 3, 4]
    q.ack(last)
    assert len(q) == 15
    assert _drain(q) == list(range(5, 20))


def test_queue_survives_a_reboot():
    path = tmp_dir() + "/q.bin"
    q = flashqueue.FlashQueue(path, capacity=32)
    for i in range(10):
        q.push(_item(i))
    last, _ = q.peek(max_items=4)
    q.ack(last)
    q2 = flashqueue.FlashQueue(path, capacity=32)
    assert len(q2) == 6
    assert _drain(q2) == [4, 5, 6, 7, 8, 9]


def test_queue_drops_oldest_and_counts_when_full():
    q = flashqueue.FlashQueue(tmp_dir() + "/q.bin", capacity=16)
    for i in range(40):
        q.push(_item(i))
    assert len(q) == 16
    assert q.dropped == 24
    assert _drain(q) == list(range(24, 40))


def test_queue_survives_a_power_cut_in_the_middle_of_a_write():
    path = tmp_dir() + "/q.bin"
    q = flashqueue.FlashQueue(path, capacity=16, slot_size=128)
    for i in range(5):
        q.push(_item(i))
    # A power cut while slot 6 (write id 6) was being written: half a record.
    with open(path, "r+b") as f:
        f.seek(6 * 128)
        f.write(b"\x51\x50\x06\x00\x00\x00\x99\x99\x99\x99" + _item(99).encode()[:30])
    q2 = flashqueue.FlashQueue(path, capacity=16, slot_size=128)
    assert q2.corrupt == 1
    assert _drain(q2) == [0, 1, 2, 3, 4]
    q2.push(_item(5))
    assert _drain(q2) == [5]


def test_queue_survives_a_truncated_file():
    path = tmp_dir() + "/q.bin"
    q = flashqueue.FlashQueue(path, capacity=16, slot_size=128)
    for i in range(8):
        q.push(_item(i))
    truncate(path, 5 * 128 + 40)  # slots 0..4 intact (ids 1..4), slot 5 cut
    q2 = flashqueue.FlashQueue(path, capacity=16, slot_size=128)
    assert file_size(path) == 16 * 128
    assert _drain(q2) == [0, 1, 2, 3]
    q2.push(_item(50))
    assert _drain(q2) == [50]


def test_queue_replays_everything_when_the_ack_file_is_corrupt():
    path = tmp_dir() + "/q.bin"
    q = flashqueue.FlashQueue(path, capacity=16)
    for i in range(6):
        q.push(_item(i))
    last, _ = q.peek(max_items=3)
    q.ack(last)
    with open(path + ".ack", "w") as f:
        f.write("garbage")
    q2 = flashqueue.FlashQueue(path, capacity=16)
    assert _drain(q2) == [0, 1, 2, 3, 4, 5]  # at-least-once: duplicates, never loss


def test_queue_refuses_a_record_bigger_than_a_slot():
    q = flashqueue.FlashQueue(tmp_dir() + "/q.bin", capacity=16, slot_size=64)
    exc = raises(ValueError, q.push, "x" * 60)
    assert "does not fit" in str(exc)


def test_queue_holds_a_day_of_minute_readings_in_256_kb():
    q = flashqueue.FlashQueue(tmp_dir() + "/q.bin")
    size = q.capacity * q.slot_size
    assert size <= 256 * 1024
    assert q.capacity >= 24 * 60
    assert len(_item(4294967295).encode()) <= q.slot_size - flashqueue.HEADER
    heartbeat = (
        '{"seq":4294967295,"ts":4294967295,"m":{"occupied":1,"mag":-412.5,"batt_mv":3012,'
        '"t":-21.5,"mag_base":146.2},"ev":"heartbeat"}'
    )
    q.push(heartbeat)  # the longest record the firmware writes fits
    print("queue capacity: %d readings (%.1f h at 1/min) in %d KB" % (q.capacity, q.capacity / 60.0, size // 1024))


def test_queue_peek_respects_the_byte_budget():
    q = flashqueue.FlashQueue(tmp_dir() + "/q.bin", capacity=64)
    for i in range(30):
        q.push(_item(i))
    _, items = q.peek(max_items=50, max_bytes=400)
    assert 0 < len(items) <= 5
    total = 0
    for i in items:
        total += len(i) + 1
    assert total <= 400


def test_queue_peek_after_a_write_id_skips_what_was_sent_but_keeps_it_pending():
    q = flashqueue.FlashQueue(tmp_dir() + "/q.bin", capacity=32)
    for i in range(6):
        q.push(_item(i))
    last, items = q.peek(max_items=4)
    assert [json.loads(i)["seq"] for i in items] == [0, 1, 2, 3]
    last2, items2 = q.peek(after=last)
    assert [json.loads(i)["seq"] for i in items2] == [4, 5]
    assert q.peek(after=last2) == (last2, [])
    assert len(q) == 6 and q.settled() == 0


def test_queue_ack_while_stops_at_the_first_record_not_covered():
    path = tmp_dir() + "/q.bin"
    q = flashqueue.FlashQueue(path, capacity=32)
    for i in range(6):
        q.push(_item(i))
    seen = []

    def covered(payload):
        seen.append(json.loads(bytes(payload))["seq"])
        return seen[-1] <= 2

    assert q.ack_while(covered) == 3
    assert seen == [0, 1, 2, 3] and len(q) == 3
    assert q.ack_while(lambda payload: False) == 0 and len(q) == 3
    assert len(flashqueue.FlashQueue(path, capacity=32)) == 3  # the ack is on flash


def test_queue_ack_while_passes_over_a_corrupt_slot_between_covered_records():
    path = tmp_dir() + "/q.bin"
    q = flashqueue.FlashQueue(path, capacity=32)
    for i in range(4):
        q.push(_item(i))
    with open(path, "r+b") as f:  # flip a payload byte of write id 2 (slot 2)
        f.seek(2 * q.slot_size + flashqueue.HEADER + 3)
        f.write(b"X")
    assert q.ack_while(lambda payload: True) == 3
    assert len(q) == 0
