"""Stopping child processes the same way everywhere: a signal, a grace period, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, sig: int = signal.SIGTERM,
                 timeout: float = 10.0) -> int | None:
    """Send `sig`, wait up to `timeout`, then kill; returns the exit code (None if never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
