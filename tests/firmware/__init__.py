"""Firmware tests: drivers, queue, detector, apps, host runner, mpy-cross and MicroPython runs."""
