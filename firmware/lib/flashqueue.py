"""Store-and-forward queue in flash: a fixed-size ring of checksummed slots.

Layout: one file of `capacity` slots of `slot_size` bytes. A slot is
  magic 0x51 (1) | length (1) | write id (u32 LE) | crc32 (u32 LE) | payload
where the CRC covers the write id, the length and the payload. A second tiny
file (`<path>.ack`) holds the highest write id the broker has acknowledged.

Guarantees:
- Survives reboot: the write position and the oldest unsent record are found
  again by scanning the slot headers (one slot buffer, no list of the file).
- Survives a power cut mid-write: a torn slot fails its CRC and is skipped; a
  truncated file is re-extended; a corrupt ack file means "replay everything"
  (at-least-once; the gateway's writes are idempotent).
- Bounded: when full, the oldest unsent record is overwritten and `dropped`
  counts it.
- Replays oldest first, in batches the caller sends as one message each;
  `peek(after=w)` starts after write id `w`, so a caller can keep records it
  has sent but not yet seen confirmed (lib/device.py keeps every reading until
  the gateway's receipt covers it) and still read the unsent ones.
- `ack_while(covered)` acknowledges the oldest pending records one by one for
  as long as `covered(payload)` says yes: the queue knows nothing of the
  payload format, the caller decides what a receipt covers.

Refuses payloads longer than `slot_size - 10` bytes (ValueError).
Capacity: default 1536 slots x 160 B = 240 KB = 25.6 h of 1-minute readings
(a slot holds 150 bytes: the longest parking heartbeat is ~125).
RAM: one slot buffer plus a few ints; `peek` returns at most `max_items` bytes objects;
`ack_while` hands the predicate a memoryview of the slot buffer (no copy).
"""

import os
import struct

from binascii import crc32  # ESP32, RP2, the WebAssembly port and CPython all have it

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from typing import IO, Callable

from flashfile import recover, replace
from log import log

MAGIC = 0x51
HEADER = 10


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _size(path: str) -> int:
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


class FlashQueue:
    def __init__(self, path: str, capacity: int = 1536, slot_size: int = 160) -> None:
        if slot_size < 32 or slot_size > 265:
            raise ValueError("slot_size must be 32..265 bytes")
        self.path = path
        self.ack_path = path + ".ack"
        self.capacity = capacity
        self.slot_size = slot_size
        self.buf = bytearray(slot_size)
        self.dropped = 0
        self.corrupt = 0
        self._prepare_file()
        self.acked = self._load_ack()
        self.head = 1  # next write id
        self._scan()

    # ---- recovery -------------------------------------------------------

    def _prepare_file(self) -> None:
        want = self.capacity * self.slot_size
        have = _size(self.path)
        if have == want:
            return
        if have > want:
            log("queue_file_resized", path=self.path, had=have, want=want)
            os.remove(self.path)
            have = -1
        mode = "ab" if have >= 0 else "wb"
        if have > 0:
            log("queue_file_truncated", path=self.path, had=have, want=want)
        zeros = bytes(256)
        with open(self.path, mode) as f:
            left = want - max(have, 0)
            while left > 0:
                n = min(left, len(zeros))
                f.write(zeros[:n])
                left -= n

    def _load_ack(self) -> int:
        recover(self.ack_path)
        if not _exists(self.ack_path):
            return 0
        try:
            with open(self.ack_path) as f:
                parts = f.read().split()
            value, check = int(parts[0]), int(parts[1])
            if value ^ 0x5A5A5A5A != check:
                raise ValueError("check word mismatch")
            return value
        except (OSError, ValueError, IndexError) as exc:
            log("queue_ack_corrupt", path=self.ack_path, reason=repr(exc))
            return 0

    def _save_ack(self) -> None:
        tmp = self.ack_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d" % (self.acked, self.acked ^ 0x5A5A5A5A))
        replace(tmp, self.ack_path)

    def _slot_wid(self, f: "IO[bytes]", slot: int) -> int:
        """Return the write id of a valid slot, or 0 if it is empty or corrupt."""
        buf = self.buf
        f.seek(slot * self.slot_size)
        n = f.readinto(buf)
        if n is None or n < HEADER or buf[0] != MAGIC:
            return 0
        length = buf[1]
        if length == 0 or length > self.slot_size - HEADER:
            self.corrupt += 1
            return 0
        wid: int
        crc: int
        wid, crc = struct.unpack_from("<II", buf, 2)
        mv = memoryview(buf)
        if crc32(mv[HEADER : HEADER + length], crc32(mv[1:6])) & 0xFFFFFFFF != crc:
            self.corrupt += 1
            return 0
        return wid

    def _scan(self) -> None:
        top = 0
        with open(self.path, "rb") as f:
            for slot in range(self.capacity):
                wid = self._slot_wid(f, slot)
                if wid and wid % self.capacity == slot and wid > top:
                    top = wid
        if self.corrupt:
            log("queue_corrupt_slots", path=self.path, count=self.corrupt)
        self.head = top + 1
        if self.acked >= self.head:  # ack file newer than data (data lost): restart
            self.acked = top

    # ---- public API ------------------------------------------------------

    def __len__(self) -> int:
        return self.head - 1 - self._tail_floor()

    def settled(self) -> int:
        """Highest write id that is no longer pending (acknowledged or overwritten)."""
        return self._tail_floor()

    def _tail_floor(self) -> int:
        """Highest write id that is no longer pending (acked or overwritten)."""
        floor = self.head - 1 - self.capacity
        return self.acked if self.acked > floor else floor

    def push(self, payload: "bytes | str") -> int:
        """Append one record (bytes or str). Overwrites the oldest when full."""
        if isinstance(payload, str):
            payload = payload.encode()
        length = len(payload)
        if length == 0 or length > self.slot_size - HEADER:
            raise ValueError("record of %d bytes does not fit a %d-byte slot" % (length, self.slot_size))
        wid = self.head
        if wid - self.capacity > self.acked:
            self.dropped += 1
        buf = self.buf
        buf[0] = MAGIC
        buf[1] = length
        struct.pack_into("<I", buf, 2, wid)
        buf[HEADER : HEADER + length] = payload
        mv = memoryview(buf)
        crc = crc32(mv[HEADER : HEADER + length], crc32(mv[1:6])) & 0xFFFFFFFF
        struct.pack_into("<I", buf, 6, crc)
        with open(self.path, "r+b") as f:
            f.seek((wid % self.capacity) * self.slot_size)
            f.write(mv[: HEADER + length])
        self.head = wid + 1
        return wid

    def peek(
        self, max_items: int = 20, max_bytes: int = 2048, after: int = 0, until: int = 0
    ) -> "tuple[int, list[bytes]]":
        """Return (last_write_id, [payload bytes, ...]) of the oldest pending records after write id `after`.

        With `until` > 0 no record after that write id is returned. `last_write_id`
        is where the next peek should start (`after=last`); it is `after` (or the
        settled floor) itself when nothing is there.
        """
        end = self.head if until <= 0 or until >= self.head else until + 1
        items: "list[bytes]" = []
        last = self._tail_floor()
        if after > last:
            last = after
        total = 0
        with open(self.path, "rb") as f:
            wid = last + 1
            while wid < end and len(items) < max_items:
                got = self._slot_wid(f, wid % self.capacity)
                if got == wid:
                    length = self.buf[1]
                    if items and total + length + 1 > max_bytes:
                        break
                    items.append(bytes(self.buf[HEADER : HEADER + length]))
                    total += length + 1
                last = wid  # a corrupt slot is skipped for good
                wid += 1
        return last, items

    def ack_while(self, covered: "Callable[[memoryview], bool]") -> int:
        """Acknowledge pending records oldest first while `covered(payload)` is true; return how many.

        Stops at the first record `covered` refuses. A corrupt slot is passed over
        and acknowledged with the next covered record after it (it can never be
        sent); corrupt slots at the end stay pending until `peek` skips them.
        The payload view points into the slot buffer: valid only during the call.
        """
        last = self._tail_floor()
        done = 0
        with open(self.path, "rb") as f:
            wid = last + 1
            while wid < self.head:
                if self._slot_wid(f, wid % self.capacity) == wid:
                    length = self.buf[1]
                    if not covered(memoryview(self.buf)[HEADER : HEADER + length]):
                        break
                    last = wid
                    done += 1
                wid += 1
        self.ack(last)
        return done

    def ack(self, last_wid: int) -> None:
        """Mark every record up to `last_wid` as delivered."""
        if last_wid > self.acked:
            self.acked = last_wid
            try:
                self._save_ack()
            except OSError as exc:
                log("queue_ack_save_failed", reason=repr(exc))
