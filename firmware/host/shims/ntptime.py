"""Host stand-in for MicroPython's `ntptime`: the host clock is already synced."""

host = "pool.ntp.org"


def settime() -> None:
    return None
