"""Host stand-in for MicroPython's `network` module: a WLAN that is always connected."""

from __future__ import annotations

STA_IF = 0
AP_IF = 1


class WLAN:
    def __init__(self, interface: int = STA_IF) -> None:
        self.interface = interface
        self._active = True
        self.connected = True
        self.settings: dict[str, object] = {}

    def active(self, value: bool | None = None) -> bool:
        if value is not None:
            self._active = value
        return self._active

    def connect(self, ssid: str, password: str = "") -> None:
        self.settings["ssid"] = ssid

    def isconnected(self) -> bool:
        return self.connected

    def ifconfig(self) -> tuple[str, str, str, str]:
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def status(self, what: str | None = None) -> int:
        return -55 if what == "rssi" else 1010

    def config(self, **kwargs: object) -> None:
        self.settings.update(kwargs)
