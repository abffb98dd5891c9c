"""Types of what the firmware is handed: buses, chips, port modules, the MQTT client. Types only.

There is no fwtypes.py: this file is read by mypy alone (MicroPython has no `typing`
module), imported by the firmware under `if TYPE_CHECKING:`. Each protocol names only
the members the firmware calls, so the MicroPython port modules (checked against
micropython-esp32-stubs in firmware/mypy-device.ini), the host shims and the fake chips
(firmware/host/, checked in firmware/mypy.ini) all satisfy it structurally.
Parameters are positional-only, as in MicroPython's own signatures.
"""

from typing import Callable, Protocol

# True in firmware/mypy-device.ini, false in firmware/mypy.ini (mypy's always_true/always_false).
MICROPYTHON: bool

# What time.ticks_ms() returns: opaque on MicroPython (it wraps around), so ticks are
# only compared and advanced through ticks_diff() / ticks_add(), never with + and -.
# On the host (clock.py's CPython fallback) they are plain ints.
if MICROPYTHON:
    from _mpy_shed.time_mp import _TicksMs

    Ticks = _TicksMs
else:
    Ticks = int

# Bytes a driver reads from (a frame, a register block).
Buffer = bytes | bytearray | memoryview

SleepMs = Callable[[int], None]


class I2CBus(Protocol):
    """machine.I2C: the subset the SHT31, BME280 and QMC5883L drivers use."""

    def writeto(self, addr: int, buf: bytes, /) -> int | None: ...
    def readfrom_into(self, addr: int, buf: bytearray, /) -> None: ...
    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, /) -> bytes: ...
    def readfrom_mem_into(self, addr: int, memaddr: int, buf: bytearray, /) -> None: ...
    def writeto_mem(self, addr: int, memaddr: int, buf: bytes, /) -> None: ...


class UARTPort(Protocol):
    """machine.UART as the PMS5003 driver uses it (timeout=0: read() never blocks)."""

    def any(self) -> int: ...
    def read(self) -> bytes | None: ...
    def write(self, buf: bytes, /) -> int | None: ...


class OutputPin(Protocol):
    """machine.Pin in output mode (the PMS3003's SET line)."""

    def value(self, v: int, /) -> object: ...


class NTPModule(Protocol):
    """The `ntptime` module."""

    host: str

    def settime(self) -> None: ...


class WDTHandle(Protocol):
    def feed(self) -> None: ...


class MachineModule(Protocol):
    """The `machine` module as the watchdog and reset-cause code use it."""

    def WDT(self, *, timeout: int) -> WDTHandle: ...  # noqa: N802 - MicroPython's name
    def reset_cause(self) -> int: ...


class WLANInterface(Protocol):
    """network.WLAN: station and access point."""

    def active(self, is_active: bool, /) -> None: ...
    def isconnected(self) -> bool: ...
    def connect(self, ssid: str, key: str, /) -> None: ...
    def ifconfig(self) -> tuple[str, str, str, str]: ...
    def status(self, param: str, /) -> int: ...
    # ESP32 takes essid/password, other ports ssid/key (the portal tries both)
    def config(self, *, essid: str = ..., ssid: str = ..., password: str = ..., key: str = ...) -> None: ...


class NetworkModule(Protocol):
    """The `network` module."""

    STA_IF: int
    AP_IF: int

    def WLAN(self, interface_id: int, /) -> WLANInterface: ...  # noqa: N802 - MicroPython's name


# IPv4 (host, port) or IPv6 (host, port, flowinfo, scope id), as getaddrinfo returns them
SocketAddress = tuple[str, int] | tuple[str, int, int, int]


class StreamSocket(Protocol):
    def settimeout(self, value: float | None, /) -> None: ...
    def recv(self, bufsize: int, /) -> bytes: ...
    def send(self, data: bytes, /) -> int: ...
    def close(self) -> None: ...


class ListeningSocket(StreamSocket, Protocol):
    def setsockopt(self, level: int, optname: int, value: int, /) -> None: ...
    def bind(self, address: SocketAddress, /) -> None: ...
    def listen(self, backlog: int, /) -> None: ...
    def accept(self) -> tuple[StreamSocket, object]: ...


class SocketModule(Protocol):
    """The `socket` module as the setup portal uses it."""

    SOL_SOCKET: int
    SO_REUSEADDR: int

    def socket(self) -> ListeningSocket: ...
    def getaddrinfo(self, host: str, port: int, /) -> list[tuple[int, int, int, str, SocketAddress]]: ...


MessageCallback = Callable[[bytes, bytes], None]


class Closable(Protocol):
    def close(self) -> None: ...


class MQTTClient(Protocol):
    """umqtt.simple.MQTTClient: the calls the session makes."""

    @property
    def sock(self) -> Closable | None: ...

    def set_callback(self, f: MessageCallback, /) -> None: ...
    def set_last_will(self, topic: str, msg: bytes, retain: bool = ..., qos: int = ...) -> None: ...
    def connect(self) -> object: ...
    def subscribe(self, topic: str, qos: int = ...) -> None: ...
    def check_msg(self) -> object: ...
    def ping(self) -> None: ...
    def publish(self, topic: str, msg: bytes, retain: bool = ..., qos: int = ..., /) -> None: ...
    def disconnect(self) -> None: ...


class MQTTClientClass(Protocol):
    """The class umqtt.simple.MQTTClient itself (the session builds one per connection)."""

    def __call__(
        self, client_id: str, server: str, *, port: int, user: str, password: str, keepalive: int
    ) -> MQTTClient: ...


class PMSensor(Protocol):
    """drivers.pms5003.PMS5003 / PMS3003 as the air box drives them."""

    def passive(self) -> None: ...
    def sleep(self) -> None: ...
    def wake(self) -> None: ...
    def read(self) -> tuple[int, int, int] | None: ...


class ReadSensor(Protocol):
    """A sensor the air box reads once per cycle: SHT31 (t, rh), BME280 (t, p, rh), ... (lib/sensorconfig.py)."""

    def read(self) -> tuple[float, ...]: ...


class Buses(Protocol):
    """What a sensor builder of lib/sensorconfig.py is handed: the board's buses (main.py) or fake ones
    (firmware/host/fakehw.py), each opened on first use."""

    def i2c(self) -> I2CBus: ...
    def uart(self) -> UARTPort: ...
    def set_pin(self) -> OutputPin | None: ...


class Magnetometer(Protocol):
    """drivers.qmc5883l.QMC5883L: ((x, y, z) uT, temperature) or None for an overflowed sample."""

    def read(self) -> tuple[tuple[float, float, float], float] | None: ...


class Application(Protocol):
    """What run_loop drives: the air box or the parking sensor."""

    cycles: int

    def tick(self) -> int: ...
    def reconfigure(self) -> None: ...


class PWMChannel(Protocol):
    """machine.PWM as the RGB LED driver sets it (0..65535)."""

    def duty_u16(self, value: int, /) -> None: ...


class PixelStrip(Protocol):
    """neopixel.NeoPixel: pixels set by index, shown by write()."""

    def __setitem__(self, index: int, colour: tuple[int, int, int], /) -> None: ...
    def write(self) -> None: ...


class RGBLed(Protocol):
    """drivers.rgbled.PWMRGBLed / PixelLed as the flag display drives them."""

    def show(self, rgb: tuple[int, int, int], /) -> None: ...
