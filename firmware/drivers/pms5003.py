"""Plantower PMS5003 / PMS3003 particle sensors: frame parsing, commands, UART driver.

Parsing is pure (bytes in, numbers out) and runs on CPython and MicroPython;
the classes at the end are a thin layer over a `machine.UART`-like object
(`read()`, `write()`, `any()`).

Frame (both chips): 0x42 0x4D, frame length (u16 BE, counts the bytes after
itself), data words (u16 BE), checksum (u16 BE, sum of every byte before it).
PMS5003 frames are 32 bytes (13 data words), PMS3003 frames 24 bytes (9 data
words). Words 3..5 are the "atmospheric environment" PM1/PM2.5/PM10 in ug/m3,
which is what citysense publishes (as LASS and AirBox do).

RAM: one 64-byte preallocated buffer per scanner. Refuses frames whose length
field does not match the chip, and frames with a wrong checksum.
"""

import struct

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from fwtypes import Buffer, OutputPin, SleepMs, UARTPort

    PM = tuple[int, int, int]  # pm1, pm25, pm10 in ug/m3

START1 = 0x42
START2 = 0x4D
PMS5003_FRAME = 32
PMS3003_FRAME = 24

# Command bytes (PMS5003 only; the PMS3003 has no command set).
CMD_READ = 0xE2
CMD_MODE = 0xE1  # data 0 = passive, 1 = active
CMD_SLEEP = 0xE4  # data 0 = sleep, 1 = wake


def checksum(buf: "Buffer", start: int, end: int) -> int:
    """Sum of the bytes buf[start:end], modulo 2**16."""
    s = 0
    for i in range(start, end):
        s += buf[i]
    return s & 0xFFFF


def command(cmd: int, data: int) -> bytes:
    """Build the 7-byte command frame for `cmd` with a 16-bit `data` word."""
    frame = bytearray(7)
    frame[0] = START1
    frame[1] = START2
    frame[2] = cmd
    frame[3] = (data >> 8) & 0xFF
    frame[4] = data & 0xFF
    s = checksum(frame, 0, 5)
    frame[5] = s >> 8
    frame[6] = s & 0xFF
    return bytes(frame)


def build_frame(
    pm_atm: "PM",
    pm_cf1: "PM | None" = None,
    counts: "tuple[int, ...]" = (0, 0, 0, 0, 0, 0),
    frame_len: int = PMS5003_FRAME,
) -> bytes:
    """Build a valid frame (used by tests and the host's fake UART).

    `pm_atm` is (pm1, pm25, pm10) atmospheric; `pm_cf1` defaults to the same.
    """
    if pm_cf1 is None:
        pm_cf1 = pm_atm
    words = list(pm_cf1) + list(pm_atm)
    if frame_len == PMS5003_FRAME:
        words += list(counts) + [0x9700]
    else:
        words += [0, 0, 0]
    buf = bytearray(frame_len)
    buf[0] = START1
    buf[1] = START2
    struct.pack_into(">H", buf, 2, frame_len - 4)
    for i, w in enumerate(words):
        struct.pack_into(">H", buf, 4 + 2 * i, w)
    struct.pack_into(">H", buf, frame_len - 2, checksum(buf, 0, frame_len - 2))
    return bytes(buf)


def frame_status(buf: "Buffer", start: int, avail: int, frame_len: int) -> str:
    """Check the bytes at buf[start:start+avail] for a frame.

    Returns 'ok', 'short' (could be a frame, more bytes needed), 'header'
    (not a frame start) or 'checksum' / 'length' (a broken frame).
    """
    if avail < 1:
        return "short"
    if buf[start] != START1:
        return "header"
    if avail < 2:
        return "short"
    if buf[start + 1] != START2:
        return "header"
    if avail < 4:
        return "short"
    if (buf[start + 2] << 8 | buf[start + 3]) != frame_len - 4:
        return "length"
    if avail < frame_len:
        return "short"
    want = buf[start + frame_len - 2] << 8 | buf[start + frame_len - 1]
    if checksum(buf, start, start + frame_len - 2) != want:
        return "checksum"
    return "ok"


def parse_frame(buf: "Buffer", start: int = 0) -> "PM":
    """Return (pm1, pm25, pm10) atmospheric ug/m3 from a checked frame."""
    pm1, pm25, pm10 = struct.unpack_from(">HHH", buf, start + 10)
    return pm1, pm25, pm10


def parse_frame_cf1(buf: "Buffer", start: int = 0) -> "PM":
    """Return (pm1, pm25, pm10) CF=1 ("standard particle") from a checked frame."""
    pm1, pm25, pm10 = struct.unpack_from(">HHH", buf, start + 4)
    return pm1, pm25, pm10


class FrameScanner:
    """Finds frames in a byte stream fed in arbitrary pieces; resyncs after garbage.

    Pure: no I/O. `feed(data)` returns the last good (pm1, pm25, pm10) found in
    the bytes seen so far, or None; counters say what was thrown away.
    """

    def __init__(self, frame_len: int = PMS5003_FRAME) -> None:
        self.frame_len = frame_len
        self.buf = bytearray(2 * frame_len)
        self.n = 0
        self.frames = 0
        self.bad_checksum = 0
        self.garbage = 0

    def reset(self) -> None:
        self.n = 0

    def _drop(self, count: int) -> None:
        buf = self.buf
        n = self.n
        for i in range(count, n):
            buf[i - count] = buf[i]
        self.n = n - count

    def feed(self, data: "Buffer") -> "PM | None":
        result = None
        pos = 0
        size = len(data)
        cap = len(self.buf)
        while pos < size or self.n >= self.frame_len:
            take = min(cap - self.n, size - pos)
            if take > 0:
                self.buf[self.n : self.n + take] = data[pos : pos + take]
                self.n += take
                pos += take
            got = self._scan()
            if got is not None:
                result = got
            elif take <= 0 and self.n >= cap:
                # Defensive: never spin on a full buffer.
                self._drop(1)
                self.garbage += 1
        return result

    def _scan(self) -> "PM | None":
        """Consume from the head of the buffer; return a frame's values or None."""
        found: "PM | None" = None
        while self.n > 0:
            status = frame_status(self.buf, 0, self.n, self.frame_len)
            if status == "short":
                break
            if status == "ok":
                found = parse_frame(self.buf, 0)
                self.frames += 1
                self._drop(self.frame_len)
                continue
            if status == "checksum":
                self.bad_checksum += 1
            else:
                self.garbage += 1
            # Skip one byte and look for the next start byte.
            self._drop(1)
        return found


class PMS5003:
    """PMS5003 on a UART (9600 8N1) in passive mode: wake, request, read, sleep.

    `uart` needs read(), write() and any(); `sleep_ms` is injected so the host
    runner and tests can run without real delays.
    """

    frame_len = PMS5003_FRAME

    def __init__(self, uart: "UARTPort", sleep_ms: "SleepMs", set_pin: "OutputPin | None" = None) -> None:
        self.uart = uart
        self.sleep_ms = sleep_ms
        self.set_pin = set_pin
        self.scanner = FrameScanner(self.frame_len)
        self.asleep = False

    def _flush(self) -> None:
        while self.uart.any():
            if not self.uart.read():
                break
        self.scanner.reset()

    def passive(self) -> None:
        self.uart.write(command(CMD_MODE, 0))
        self.sleep_ms(50)
        self._flush()

    def sleep(self) -> None:
        self.uart.write(command(CMD_SLEEP, 0))
        self.asleep = True

    def wake(self) -> None:
        self.uart.write(command(CMD_SLEEP, 1))
        self.asleep = False

    def read(self, timeout_ms: int = 1500) -> "PM | None":
        """Request one frame and return (pm1, pm25, pm10) or None on timeout."""
        self._flush()
        self.uart.write(command(CMD_READ, 0))
        waited = 0
        while waited <= timeout_ms:
            if self.uart.any():
                data = self.uart.read()
                if data:
                    got = self.scanner.feed(data)
                    if got is not None:
                        return got
            self.sleep_ms(20)
            waited += 20
        return None


class PMS3003(PMS5003):
    """PMS3003: active mode only (no commands); sleep/wake through the SET pin.

    `read()` discards stale bytes and returns the next complete frame.
    """

    frame_len = PMS3003_FRAME

    def passive(self) -> None:
        self._flush()

    def sleep(self) -> None:
        if self.set_pin is not None:
            self.set_pin.value(0)
        self.asleep = True

    def wake(self) -> None:
        if self.set_pin is not None:
            self.set_pin.value(1)
        self.asleep = False

    def read(self, timeout_ms: int = 2500) -> "PM | None":
        self._flush()
        waited = 0
        while waited <= timeout_ms:
            if self.uart.any():
                data = self.uart.read()
                if data:
                    got = self.scanner.feed(data)
                    if got is not None:
                        return got
            self.sleep_ms(20)
            waited += 20
        return None
