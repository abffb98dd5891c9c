"""The CLI's consoles: long lines are never wrapped or cut, on a terminal or in a pipe.

Rich wraps at the terminal's width and, without a terminal (a pipe, a log, a test), at 80
columns, which cut table cells (`tp-school-0…`) and split one-line errors in two. Lines are
soft-wrapped (left to the terminal) and tables get room when there is no terminal to size them.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 200


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)
