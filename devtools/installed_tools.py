"""Finding the command-line tools that pip installs next to this interpreter.

A venv's `bin/` is on PATH only when the venv is activated; `make` and the CLI run its
Python directly, so the tools beside `sys.executable` are looked at first.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def installed_tool(name: str) -> str | None:
    """The executable `name` beside this interpreter, else on PATH, else None."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)
