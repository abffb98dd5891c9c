"""Helpers for tests that run on CPython (pytest) and on MicroPython (tests_mpy/run.mjs)."""

# ruff: noqa: UP031, SIM105 - also runs under MicroPython: %-formatting, no contextlib

import os

_counter = [0]


def tmp_dir():
    """A fresh empty directory (tempfile on CPython, /tmp/tN on MicroPython)."""
    try:
        import tempfile

        return tempfile.mkdtemp(prefix="fwtest-")
    except ImportError:
        pass
    _counter[0] += 1
    for base in ("/tmp",):
        try:
            os.mkdir(base)
        except OSError:
            pass
    path = "/tmp/t%d" % _counter[0]
    try:
        os.mkdir(path)
    except OSError:
        for name in os.listdir(path):
            os.remove(path + "/" + name)
    return path


def raises(exc_type, fn, *args, **kwargs):
    """Assert fn(*args) raises exc_type; return the exception."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s not raised" % exc_type.__name__)


def file_size(path):
    return os.stat(path)[6]


def truncate(path, size):
    """Cut a file to `size` bytes (what a power cut during a write leaves behind)."""
    with open(path, "rb") as f:
        data = f.read(size)
    with open(path, "wb") as f:
        f.write(data)


class Collector:
    """Records calls to `log.sink` so tests can assert on logged reasons."""

    def __init__(self):
        self.lines = []

    def __call__(self, line):
        self.lines.append(line)

    def events(self):
        return [line.split()[0][6:] for line in self.lines]
