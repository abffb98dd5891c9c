"""Puts the firmware modules (and the host fakes) on sys.path for the firmware tests.

The driver, queue, config and detector tests in this folder are written in the
subset both CPython and MicroPython understand (plain asserts, helpers from
fwtest_support), because firmware/tests_mpy/run.mjs runs the same files under
MicroPython (WebAssembly port).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRMWARE = HERE.parent.parent / "firmware"

for p in (HERE, FIRMWARE / "host", FIRMWARE, FIRMWARE / "lib", FIRMWARE / "host" / "shims"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
