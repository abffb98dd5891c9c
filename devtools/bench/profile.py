"""Where the gateway spends its CPU under load: py-spy, sampled from outside the process.

py-spy reads the gateway's Python stacks through ptrace (no instrumentation in the
gateway), so the profile is of the very process being benchmarked. The summary keeps the
functions with the most samples where they are on top of the stack ("self") and anywhere
on it ("cumulative"), as shares of the samples of the event-loop thread: the
Prometheus and executor threads idle and would only dilute the figures.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.installed_tools import installed_tool

MAIN_THREAD_MARK = "Runner.run"  # asyncio.run's frame: the event loop's thread
# frames on (nearly) every stack, left out of the cumulative table: the event loop and the CLI
FRAMEWORK = ("asyncio/", "typer/", "_click/", "click/", "<frozen runpy>", "citysense/cli.py", "citysense/__main__.py")


class Profiler:
    """`py-spy record` on one process for a fixed time, raw (collapsed) stacks to a file."""

    def __init__(self, pid: int, seconds: float, out: Path, rate_hz: int = 100) -> None:
        exe = installed_tool("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out = out
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", str(rate_hz),
             "--format", "raw", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def summary(self, top: int = 12, timeout: float = 60.0) -> dict[str, Any]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {"error": "py-spy did not finish"}
        if self.proc.returncode != 0 or not self.out.exists():
            return {"error": f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}"}
        return summarize(self.out.read_text(errors="replace"), top)


def _label(frame: str) -> str:
    """'func (path/to/module.py:123)' -> 'func (module.py)': one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


def summarize(raw: str, top: int = 12) -> dict[str, Any]:
    """Top functions by self and cumulative share of the event-loop thread's samples."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or MAIN_THREAD_MARK not in stack:
            continue
        n = int(count)
        frames = [_label(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for label in set(frames):
            anywhere[label] += n

    def table(counter: Counter[str], skip_framework: bool) -> list[dict[str, Any]]:
        rows = []
        for label, n in counter.most_common():
            if skip_framework and any(part in label for part in FRAMEWORK):
                continue
            rows.append({"function": label, "pct": round(100 * n / total, 1)})
            if len(rows) == top:
                break
        return rows

    if not total:
        return {"samples": 0, "self": [], "cumulative": []}
    return {"samples": total, "self": table(own, False), "cumulative": table(anywhere, True)}
